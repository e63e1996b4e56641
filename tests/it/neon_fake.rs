//! A local fake of Neon's control-plane HTTP API v2 (`/work/shared/neon/API.md`), for the
//! integration tests: the real `drillbook` binary is pointed at it with `NEON_API_URL` and
//! `NEON_API_KEY`, and drills against it validate real data.
//!
//! One project. Every branch is a real, private local PostgreSQL instance (Unix socket only)
//! with the role `neondb_owner` and the database `neondb`:
//!
//! - `main` (the default, root branch) is a cluster created at start with WAL archiving, and
//!   a base backup taken right after: that backup plus the archive are the project's history.
//!   A branch or restore at a timestamp or LSN on that history is a real point-in-time
//!   restore (`drillbook::steps::local::restore_into`).
//! - A branch or restore at the head of any branch is a fresh `pg_basebackup` of that
//!   branch's instance, restored into a new instance.
//! - Snapshots are captured eagerly: a `pg_basebackup` at the head (or of a temporary
//!   point-in-time instance) kept in the fake's directory; restoring one makes a new branch.
//!
//! The work runs in the background after the response: branches start `init`, operations
//! `running`, and an operation becomes `finished` once its work is done and at least
//! [`Options::operation_ms`] (plus up to [`Options::operation_spread_ms`]) passed (`failed`,
//! with `error`, when the work failed or the test asked for it with
//! [`FakeNeon::fail_next_operation`]). While any operation runs, mutating requests get 423
//! (switchable). [`Options::api_latency_ms`] delays every response like a network round
//! trip; [`FakeNeon::requests`] and [`FakeNeon::operation_times`] say when each request was
//! served and each operation ended, for the benchmark of how soon drillbook notices.
//!
//! Connection strings are per endpoint and stable, like Neon's: each endpoint has its own
//! socket directory in which `.s.PGSQL.5432` links to the socket of the instance of the
//! branch it currently serves, so a restore or a finalized snapshot restore keeps the
//! connection string while the data behind it changes.
//!
//! Limitations (a fake, not Neon):
//! - Point-in-time history exists only for the project's original root branch (the instance
//!   created at start; after a restore onto itself it travels with the preserved branch).
//!   Every other branch, including a restored `main`, refuses timestamps and LSNs with 400.
//! - Logical replication is on from the start or never ([`Options::logical_replication`]);
//!   enabling it through `PATCH /projects/{p}` is not supported.
//! - No `read_only` endpoints, no endpoint start/suspend calls (`POST /endpoints` creates a
//!   read_write compute), no `schema-only` or
//!   archived branches, no role or database management, no soft-delete recovery; one role
//!   (`neondb_owner`) and one database (`neondb`) per branch. `neondb_owner` is a superuser
//!   here (Neon's is not), so that it can use and drop what [`FakeNeon::psql`] (which runs
//!   as `postgres`) created.
//! - Invented where Neon's behaviour is unknown: the texts and statuses of out-of-window
//!   errors (400), duplicate branch names (409), the operation actions of a restore
//!   (`create_timeline`) and of snapshots (`create_timeline`, `delete_timeline`), the default
//!   page size of the operations list (10), and what a snapshot restore does with endpoints
//!   (a restore that is not finalized gets its own endpoint; finalizing swaps the endpoints of
//!   the two branches).
//! - Start, use and drop it from synchronous code (a plain `#[test]`), not inside a tokio
//!   runtime.

// not every helper serves every test
#![allow(dead_code)]

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State as AxState;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{json, Value};

use drillbook::http::percent_encode;
use drillbook::pg::cluster::{
    find_binaries, shell_quote, Binaries, Cluster, ClusterHandle, InitOptions,
};
use drillbook::steps::local::{restore_into, Lifetime};

use crate::http_server::HttpServer;

/// The password of `neondb_owner` in every connection string (the instances trust local
/// connections anyway).
pub const PASSWORD: &str = "fake-password-xyz";
/// The one role of every branch.
pub const ROLE: &str = "neondb_owner";
/// The one database of every branch.
pub const DATABASE: &str = "neondb";
/// The id of the `main` branch.
pub const MAIN_ID: &str = "br-main-aaaa1111";
/// The 423 message (Neon's, as seen in the wild).
pub const LOCKED: &str =
    "project already has running operations, scheduling of new ones is prohibited";
/// The port in every connection string: each endpoint has its own socket directory.
const EP_PORT: u16 = 5432;
const TERMINAL: [&str; 5] = ["finished", "failed", "error", "cancelled", "skipped"];

/// How the fake project is set up.
#[derive(Debug, Clone)]
pub struct Options {
    /// The bearer token every request must carry.
    pub api_key: String,
    pub project_id: String,
    pub region_id: String,
    /// Reported as the project's `pg_version` (the local binaries are what runs).
    pub pg_version: u32,
    /// The initial `history_retention_seconds`.
    pub retention_seconds: i64,
    /// The plan maximum for `history_retention_seconds` (PATCH above it → 400).
    pub plan_max_retention_seconds: i64,
    /// `owner.branches_limit`: creating more → 422 `BRANCHES_LIMIT_EXCEEDED`.
    pub branches_limit: usize,
    /// Minimum time an operation stays `running`.
    pub operation_ms: u64,
    /// Each operation stays `running` a further pseudo-random 0 to this many milliseconds
    /// (0: exactly `operation_ms`).
    pub operation_spread_ms: u64,
    /// Added to every response, half before the request is served and half after, like a
    /// network round trip (0: none).
    pub api_latency_ms: u64,
    /// While any operation runs, every POST/PATCH/PUT/DELETE gets 423.
    pub lock_423: bool,
    /// The initial backup schedule of the default branch (`BackupScheduleItem` objects).
    pub schedule: Vec<Value>,
    /// A snapshot restore that is not finalized gets a compute of its own (when false the
    /// new branch has none until one is created with `POST /endpoints`).
    pub snapshot_restore_endpoint: bool,
    /// The project's `settings.enable_logical_replication`: main runs with
    /// `wal_level = logical` (what Neon sets when it is enabled), so a `fingerprint` can
    /// take a temporary logical slot on it.
    pub logical_replication: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            api_key: "test-neon-key".into(),
            project_id: "shiny-wind-028834".into(),
            region_id: "aws-us-east-2".into(),
            pg_version: 15,
            retention_seconds: 604_800,
            plan_max_retention_seconds: 2_592_000,
            branches_limit: 10,
            operation_ms: 100,
            operation_spread_ms: 0,
            api_latency_ms: 0,
            lock_423: true,
            schedule: Vec::new(),
            snapshot_restore_endpoint: true,
            logical_replication: false,
        }
    }
}

/// An error the next matching requests get instead of (or after) being served.
#[derive(Debug, Clone)]
pub struct Fault {
    /// `GET`, `POST`, … (case-insensitive).
    pub method: &'static str,
    /// Matches when the path after `/api/v2` contains this.
    pub path_contains: String,
    pub status: u16,
    /// How many requests get it.
    pub times: u32,
    /// A `Retry-After` header value to send along.
    pub retry_after: Option<String>,
    /// false: the request is not served; true: it is served, and its response replaced (a
    /// response lost after the server acted). Only successful responses are replaced.
    pub apply: bool,
}

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// The path after `/api/v2` (still percent-encoded).
    pub path: String,
    pub query: String,
    /// The JSON body, `Null` when empty (a string when not JSON).
    pub body: Value,
    /// Whether `Authorization: Bearer <key>` was right.
    pub authorized: bool,
    /// The HTTP status it was answered with (0 while it is being served).
    pub status: u16,
    /// When it reached the fake.
    pub arrived: Instant,
    /// When the fake read its state to serve it (half the latency after `arrived`).
    pub served: Instant,
    /// When the response left (the other half later); `None` while it is being served.
    pub answered: Option<Instant>,
}

/// When an operation ran.
#[derive(Debug, Clone)]
pub struct OperationTimes {
    pub id: String,
    pub action: &'static str,
    /// Shared by the operations one request started.
    pub batch: u64,
    pub created: Instant,
    /// When it reached its end state (`finished`, `failed`, …); `None` while it runs. A
    /// request served at or after this instant sees the end state.
    pub ended: Option<Instant>,
}

/// A running fake Neon. Dropping it stops the server and every PostgreSQL instance it
/// started, and removes its files.
pub struct FakeNeon {
    app: App,
    server: Option<HttpServer>,
    rt: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for FakeNeon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeNeon")
            .field("root", &self.app.root)
            .field("api_url", &self.api_url())
            .finish()
    }
}

impl FakeNeon {
    /// Creates the project: `main` as a real archiving cluster with `neondb_owner` and
    /// `neondb`, its base backup, then serves the API on a loopback port.
    pub fn start(opts: Options) -> FakeNeon {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let bin = find_binaries().unwrap_or_else(|e| panic!("the Neon fake needs PostgreSQL: {e}"));
        let root = std::env::temp_dir().join(format!(
            "drillbook-it-neon-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("empty-archive")).expect("create the fake's root");
        spawn_watchdog(&root);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let now = Utc::now();
        let seed = u64::from(std::process::id()) << 32
            ^ u64::try_from(now.timestamp_nanos_opt().unwrap_or(0)).unwrap_or(0);
        let state = State {
            project_name: "drillbook-fake".into(),
            retention: opts.retention_seconds,
            project_created: now,
            project_updated: now,
            seed,
            operation_ms: opts.operation_ms,
            operation_spread_ms: opts.operation_spread_ms,
            ..State::default()
        };
        let app = Arc::new(Shared {
            empty_archive: root.join("empty-archive"),
            root,
            bin,
            work: rt.handle().clone(),
            state: Mutex::new(state),
            opts,
        });
        // from here on, a panic drops the fake, which cleans up
        let mut fake = FakeNeon {
            app: app.clone(),
            server: None,
            rt: Some(rt),
        };
        let main = fake
            .runtime()
            .block_on(init_main(&app))
            .unwrap_or_else(|e| panic!("fake Neon: cannot set up main: {e}"));
        {
            let mut st = app.st();
            let mut b = Branch::new(MAIN_ID, "main", None, now);
            b.default = true;
            b.data = Some(main);
            b.schedule = app.opts.schedule.clone();
            st.branches.push(b);
            let mut ep = st.new_endpoint(MAIN_ID, now);
            ep.current_state = "active";
            ep.pending_state = None;
            ep.started_at = Some(now);
            st.endpoints.push(ep);
            app.relink(&st);
        }
        let router = axum::Router::new().fallback(handle).with_state(app);
        fake.server = Some(HttpServer::start(router));
        fake
    }

    fn runtime(&self) -> &tokio::runtime::Runtime {
        self.rt.as_ref().expect("the fake's runtime")
    }

    /// `http://127.0.0.1:PORT/api/v2` (for `NEON_API_URL`).
    pub fn api_url(&self) -> String {
        match &self.server {
            Some(s) => format!("{}/api/v2", s.url()),
            None => String::new(),
        }
    }

    pub fn project_id(&self) -> &str {
        &self.app.opts.project_id
    }

    /// The API key (for `NEON_API_KEY`).
    pub fn key(&self) -> &str {
        &self.app.opts.api_key
    }

    /// Runs `sql` on the `neondb` database of a branch (by id or name) through psql as
    /// `postgres`; panics with psql's message on failure. Returns the unaligned, tuples-only
    /// output.
    #[track_caller]
    pub fn psql(&self, branch: &str, sql: &str) -> String {
        let data = {
            let st = self.app.st();
            let b = st
                .branches
                .iter()
                .find(|b| b.id == branch || b.name == branch)
                .unwrap_or_else(|| panic!("fake Neon has no branch {branch}"));
            b.data.clone().unwrap_or_else(|| {
                panic!("branch {branch} has no instance yet (current_state {}): wait for its operations", b.current_state)
            })
        };
        let out = Command::new(self.app.bin.dir.join("psql"))
            .args(psql_args(&data, DATABASE))
            .args(["-c", sql])
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "psql on branch {branch} failed: {}\n{sql}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// An `orders` table on main with `before` rows, a recovery point, then `after` more
    /// rows. Returns the recovery point (RFC 3339, from the server's clock).
    pub fn orders(&self, before: u64, after: u64) -> String {
        self.psql(
            "main",
            &format!(
                "CREATE TABLE orders (id bigserial PRIMARY KEY, status text NOT NULL, created_at timestamptz NOT NULL DEFAULT clock_timestamp());
                 INSERT INTO orders (status) SELECT 'paid' FROM generate_series(1, {before});"
            ),
        );
        let t = self.psql(
            "main",
            "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
        );
        self.psql(
            "main",
            &format!("INSERT INTO orders (status) SELECT 'late' FROM generate_series(1, {after});"),
        );
        t
    }

    /// The connection string of the default branch's endpoint.
    pub fn main_uri(&self) -> String {
        let st = self.app.st();
        let b = st.default_branch().expect("a default branch");
        let ep = st
            .endpoints
            .iter()
            .find(|e| e.branch_id == b.id)
            .expect("the default branch has an endpoint");
        self.app.ep_uri(&ep.id, ROLE, DATABASE)
    }

    /// The current Branch objects, as the API shows them.
    pub fn branches(&self) -> Vec<Value> {
        let mut st = self.app.st();
        st.refresh();
        st.branches
            .iter()
            .map(|b| branch_json(&self.app.opts, b))
            .collect()
    }

    /// Every Operation object so far, oldest first.
    pub fn operations(&self) -> Vec<Value> {
        let mut st = self.app.st();
        st.refresh();
        st.operations
            .iter()
            .map(|o| op_json(&self.app.opts, o))
            .collect()
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.app.st().requests.clone()
    }

    /// When every operation so far was created and ended, oldest first.
    pub fn operation_times(&self) -> Vec<OperationTimes> {
        let mut st = self.app.st();
        st.refresh();
        st.operations
            .iter()
            .map(|o| OperationTimes {
                id: o.id.clone(),
                action: o.action,
                batch: o.batch,
                created: o.started,
                ended: o.ended,
            })
            .collect()
    }

    /// The next `fault.times` requests matching it get `fault.status` (see [`Fault`]).
    pub fn inject(&self, fault: Fault) {
        self.app.st().faults.push(fault);
    }

    /// The next operation with this action (`create_branch`, `start_compute`,
    /// `delete_timeline`, `create_timeline`, …) ends `failed` with an `error`, and the work
    /// of its request is not done (later operations of the request end `cancelled`).
    pub fn fail_next_operation(&self, action: &str) {
        self.app.st().fail_next.push(action.to_owned());
    }

    /// Waits until no operation runs (panics after 5 minutes).
    pub fn wait_idle(&self) {
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            {
                let mut st = self.app.st();
                st.refresh();
                if !st.busy() {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "fake Neon: operations still running after 5 minutes"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Takes a scheduled (`manual: false`) snapshot of the default branch's head now, which
    /// says it was created at `created_at` (for snapshot-age checks; pass `Utc::now()` for a
    /// fresh one). Returns its id.
    pub fn add_snapshot(&self, created_at: DateTime<Utc>) -> String {
        let (data, branch_id, name, id) = {
            let mut st = self.app.st();
            let b = st.default_branch().expect("a default branch");
            let data = b.data.clone().expect("the default branch is ready");
            let branch_id = b.id.clone();
            let name = format!(
                "{}-scheduled-{}",
                b.name,
                created_at.format("%Y-%m-%d-%H%M%S")
            );
            (data, branch_id, name, st.word_id("snap"))
        };
        let dir = self.app.new_dir("snap");
        let bin = self.app.bin.clone();
        let lsn = self
            .runtime()
            .block_on(async {
                let lsn = current_lsn(&bin, &data).await?;
                basebackup(&bin, &data, &dir).await?;
                Ok::<_, String>(lsn)
            })
            .unwrap_or_else(|e| panic!("fake Neon: cannot take the snapshot: {e}"));
        let at = created_at;
        let full_size = dir_size(&dir);
        self.app.st().snapshots.push(Snapshot {
            id: id.clone(),
            name,
            source_branch_id: branch_id,
            lsn: Some(lsn),
            timestamp: Some(ts(at)),
            created_at: at,
            expires_at: None,
            manual: false,
            dir: Some(dir),
            full_size: Some(full_size),
        });
        id
    }
}

impl Drop for FakeNeon {
    fn drop(&mut self) {
        drop(self.server.take());
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_secs(5));
        }
        let handles = self.app.st().clusters.clone();
        for h in &handles {
            h.kill_now();
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while handles.iter().any(ClusterHandle::is_running) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = std::fs::remove_dir_all(&self.app.root);
    }
}

/// Stops every instance under `root` and removes it when this process exits without dropping
/// the fake (an abort, a kill).
fn spawn_watchdog(root: &Path) {
    let r = shell_quote(&root.display().to_string());
    let script = format!(
        "while [ -d /proc/{pid} ]; do sleep 0.5; done; [ -d {r} ] || exit 0; \
         for f in {r}/c/*/data/postmaster.pid; do [ -f \"$f\" ] && kill -QUIT \"$(head -n 1 \"$f\")\" 2>/dev/null; done; \
         sleep 2; rm -rf {r}",
        pid = std::process::id()
    );
    let child = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the fake's watchdog");
    // it must outlive this process (init reaps it)
    std::mem::forget(child);
}

// ---------------------------------------------------------------------------------------
// state

type App = Arc<Shared>;

struct Shared {
    opts: Options,
    root: PathBuf,
    bin: Binaries,
    empty_archive: PathBuf,
    /// Background work runs here.
    work: tokio::runtime::Handle,
    state: Mutex<State>,
}

impl Shared {
    fn st(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new path `root/kind/N` (its parent created, itself not).
    fn new_dir(&self, kind: &str) -> PathBuf {
        let n = self.st().next_seq();
        let parent = self.root.join(kind);
        let _ = std::fs::create_dir_all(&parent);
        parent.join(n.to_string())
    }

    fn ep_dir(&self, ep: &str) -> PathBuf {
        self.root.join("ep").join(ep)
    }

    fn ep_uri(&self, ep: &str, role: &str, db: &str) -> String {
        format!(
            "postgresql://{role}:{PASSWORD}@{}:{EP_PORT}/{}?sslmode=disable",
            percent_encode(&self.ep_dir(ep).display().to_string()),
            percent_encode(db)
        )
    }

    /// Points every endpoint's socket at the instance of the branch it serves.
    fn relink(&self, st: &State) {
        for ep in &st.endpoints {
            let dir = self.ep_dir(&ep.id);
            let _ = std::fs::create_dir_all(&dir);
            let link = dir.join(format!(".s.PGSQL.{EP_PORT}"));
            let target = st
                .branch(&ep.branch_id)
                .and_then(|b| b.data.as_ref())
                .map(|d| d.socket.join(format!(".s.PGSQL.{}", d.port)));
            if std::fs::read_link(&link).ok() == target {
                continue;
            }
            let _ = std::fs::remove_file(&link);
            if let Some(t) = target {
                let _ = std::os::unix::fs::symlink(t, &link);
            }
        }
    }
}

#[derive(Default)]
struct State {
    project_name: String,
    retention: i64,
    project_created: DateTime<Utc>,
    project_updated: DateTime<Utc>,
    branches: Vec<Branch>,
    deleted_branches: HashSet<String>,
    endpoints: Vec<Endpoint>,
    operations: Vec<Operation>,
    snapshots: Vec<Snapshot>,
    deleted_snapshots: HashSet<String>,
    requests: Vec<Recorded>,
    faults: Vec<Fault>,
    fail_next: Vec<String>,
    /// Every instance ever created, for the cleanup.
    clusters: Vec<ClusterHandle>,
    seed: u64,
    seq: u64,
    /// [`Options::operation_ms`] and [`Options::operation_spread_ms`].
    operation_ms: u64,
    operation_spread_ms: u64,
}

/// A running instance.
#[derive(Debug, Clone)]
struct Data {
    handle: ClusterHandle,
    socket: PathBuf,
    port: u16,
    /// Base backup + WAL archive (only the original main instance has one).
    history: Option<History>,
}

#[derive(Debug, Clone)]
struct History {
    base: PathBuf,
    archive: PathBuf,
    began: DateTime<Utc>,
    began_lsn: u64,
}

struct Branch {
    id: String,
    name: String,
    parent_id: Option<String>,
    parent_lsn: Option<String>,
    parent_timestamp: Option<String>,
    current_state: &'static str,
    pending_state: Option<&'static str>,
    state_changed_at: DateTime<Utc>,
    default: bool,
    protected: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    last_reset_at: Option<DateTime<Utc>>,
    expires_at: Option<DateTime<Utc>>,
    restore_status: Option<&'static str>,
    restored_from: Option<String>,
    restored_as: Option<String>,
    /// For a snapshot restore: the branch it replaces when finalized.
    restore_target: Option<String>,
    annotation: BTreeMap<String, String>,
    schedule: Vec<Value>,
    data: Option<Data>,
}

impl Branch {
    fn new(id: &str, name: &str, parent_id: Option<String>, now: DateTime<Utc>) -> Branch {
        Branch {
            id: id.to_owned(),
            name: name.to_owned(),
            parent_id,
            parent_lsn: None,
            parent_timestamp: None,
            current_state: "ready",
            pending_state: None,
            state_changed_at: now,
            default: false,
            protected: false,
            created_at: now,
            updated_at: now,
            last_reset_at: None,
            expires_at: None,
            restore_status: None,
            restored_from: None,
            restored_as: None,
            restore_target: None,
            annotation: BTreeMap::new(),
            schedule: Vec::new(),
            data: None,
        }
    }

    fn set_state(&mut self, current: &'static str, pending: Option<&'static str>) {
        let now = Utc::now();
        self.current_state = current;
        self.pending_state = pending;
        self.state_changed_at = now;
        self.updated_at = now;
    }
}

struct Endpoint {
    id: String,
    branch_id: String,
    current_state: &'static str,
    pending_state: Option<&'static str>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
enum Outcome {
    /// The work still runs.
    Pending,
    Done,
    Failed(String),
    /// Told to fail by the test.
    Doomed,
    /// After a doomed operation of the same request.
    Cancelled,
}

struct Operation {
    id: String,
    action: &'static str,
    branch_id: Option<String>,
    endpoint_id: Option<String>,
    status: &'static str,
    error: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    started: Instant,
    /// Shared by the operations one request started.
    batch: u64,
    /// How long it stays `running` at least.
    min_ms: u64,
    /// When its work ended (set with any outcome other than `Pending`).
    done: Option<Instant>,
    /// When it reached its end state: the later of `done` and `started + min_ms`.
    ended: Option<Instant>,
    duration_ms: Option<u64>,
    outcome: Outcome,
}

struct OpSpec {
    action: &'static str,
    branch: Option<String>,
    endpoint: Option<String>,
}

fn op(action: &'static str, branch: &str, endpoint: Option<&str>) -> OpSpec {
    OpSpec {
        action,
        branch: Some(branch.to_owned()),
        endpoint: endpoint.map(str::to_owned),
    }
}

struct Snapshot {
    id: String,
    name: String,
    source_branch_id: String,
    lsn: Option<String>,
    timestamp: Option<String>,
    created_at: DateTime<Utc>,
    expires_at: Option<String>,
    manual: bool,
    /// The captured base backup, once taken.
    dir: Option<PathBuf>,
    full_size: Option<u64>,
}

const ADJECTIVES: [&str; 12] = [
    "shiny",
    "misty",
    "square",
    "quiet",
    "bold",
    "calm",
    "young",
    "frosty",
    "lucky",
    "silent",
    "wild",
    "billowing",
];
const NOUNS: [&str; 12] = [
    "wind", "truth", "dawn", "river", "night", "forest", "meadow", "sun", "leaf", "stone", "cloud",
    "field",
];

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl State {
    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn rand(&mut self) -> u64 {
        let n = self.next_seq();
        mix(self.seed ^ n)
    }

    /// `prefix-adjective-noun-xxxxxxxx`.
    fn word_id(&mut self, prefix: &str) -> String {
        let r = self.rand();
        let mut tail = String::new();
        let mut x = r >> 16;
        for _ in 0..8 {
            let c = b"abcdefghijklmnopqrstuvwxyz0123456789"[(x % 36) as usize];
            tail.push(c as char);
            x /= 36;
        }
        format!(
            "{prefix}-{}-{}-{tail}",
            ADJECTIVES[(r % 12) as usize],
            NOUNS[((r >> 8) % 12) as usize]
        )
    }

    fn uuid(&mut self) -> String {
        let a = self.rand();
        let b = self.rand();
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            ((b >> 48) & 0x3fff) | 0x8000,
            b & 0xffff_ffff_ffff
        )
    }

    fn branch(&self, id: &str) -> Option<&Branch> {
        self.branches.iter().find(|b| b.id == id)
    }

    fn branch_mut(&mut self, id: &str) -> Option<&mut Branch> {
        self.branches.iter_mut().find(|b| b.id == id)
    }

    fn default_branch(&self) -> Option<&Branch> {
        self.branches.iter().find(|b| b.default)
    }

    fn has_children(&self, id: &str) -> bool {
        self.branches
            .iter()
            .any(|b| b.parent_id.as_deref() == Some(id))
    }

    fn endpoint_ids(&self, branch: &str) -> Vec<String> {
        self.endpoints
            .iter()
            .filter(|e| e.branch_id == branch)
            .map(|e| e.id.clone())
            .collect()
    }

    fn check_limit(&self, limit: usize, more: usize) -> Result<(), ApiError> {
        if self.branches.len() + more > limit {
            return Err(ApiError::new(
                422,
                "BRANCHES_LIMIT_EXCEEDED",
                format!("branches limit exceeded: the project may have at most {limit} branches"),
            ));
        }
        Ok(())
    }

    fn check_name_free(&self, name: &str, except: Option<&str>) -> Result<(), ApiError> {
        if self
            .branches
            .iter()
            .any(|b| b.name == name && Some(b.id.as_str()) != except)
        {
            return Err(ApiError::new(
                409,
                "",
                format!("branch with name {name:?} already exists"),
            ));
        }
        Ok(())
    }

    /// `base`, or `base 2`, `base 3`, … whichever no branch has.
    fn free_name(&self, base: &str) -> String {
        let taken = |n: &str| self.branches.iter().any(|b| b.name == n);
        if !taken(base) {
            return base.to_owned();
        }
        (2..)
            .map(|i| format!("{base} {i}"))
            .find(|n| !taken(n))
            .unwrap_or_default()
    }

    fn new_endpoint(&mut self, branch: &str, now: DateTime<Utc>) -> Endpoint {
        Endpoint {
            id: self.word_id("ep"),
            branch_id: branch.to_owned(),
            current_state: "init",
            pending_state: Some("active"),
            created_at: now,
            updated_at: now,
            started_at: None,
        }
    }

    /// Records a request's operations, all `running`. The first one the test asked to fail
    /// is doomed (the request's work must then not be done: the bool is true), the ones
    /// after it are cancelled and the ones before it finish.
    fn add_ops(&mut self, specs: Vec<OpSpec>) -> (Vec<String>, bool) {
        let now = Utc::now();
        let mut ids = Vec::new();
        let mut doomed = false;
        let batch = self.next_seq();
        for spec in specs {
            let id = self.uuid();
            let spread = match self.operation_spread_ms {
                0 => 0,
                n => self.rand() % (n + 1),
            };
            let outcome = if doomed {
                Outcome::Cancelled
            } else if let Some(i) = self.fail_next.iter().position(|a| a == spec.action) {
                self.fail_next.remove(i);
                doomed = true;
                Outcome::Doomed
            } else {
                Outcome::Pending
            };
            self.operations.push(Operation {
                id: id.clone(),
                action: spec.action,
                branch_id: spec.branch,
                endpoint_id: spec.endpoint,
                status: "running",
                error: None,
                created_at: now,
                updated_at: now,
                started: Instant::now(),
                batch,
                min_ms: self.operation_ms + spread,
                done: (!matches!(outcome, Outcome::Pending)).then(Instant::now),
                ended: None,
                duration_ms: None,
                outcome,
            });
            ids.push(id);
        }
        if doomed {
            self.finish(&ids, &Ok(()));
        }
        (ids, doomed)
    }

    /// The work behind these operations ended.
    fn finish(&mut self, ids: &[String], result: &Result<(), String>) {
        for op in self.operations.iter_mut().filter(|o| ids.contains(&o.id)) {
            if matches!(op.outcome, Outcome::Pending) {
                op.outcome = match result {
                    Ok(()) => Outcome::Done,
                    Err(e) => Outcome::Failed(e.clone()),
                };
                op.done = Some(Instant::now());
            }
        }
    }

    /// Moves operations whose work ended, and whose minimum time passed, to their end state;
    /// returns the instant it judged by.
    fn refresh(&mut self) -> Instant {
        let at = Instant::now();
        let now = Utc::now();
        for op in &mut self.operations {
            if op.status != "running" {
                continue;
            }
            let Some(done) = op.done else { continue };
            let ended = done.max(op.started + Duration::from_millis(op.min_ms));
            if ended > at {
                continue;
            }
            let (status, error) = match &op.outcome {
                Outcome::Pending => continue,
                Outcome::Done => ("finished", None),
                Outcome::Failed(e) => ("failed", Some(e.clone())),
                Outcome::Doomed => (
                    "failed",
                    Some(format!(
                        "{} failed: the test told the fake to fail this operation",
                        op.action
                    )),
                ),
                Outcome::Cancelled => ("cancelled", None),
            };
            op.status = status;
            op.error = error;
            op.ended = Some(ended);
            op.updated_at = now;
            op.duration_ms =
                Some(u64::try_from((ended - op.started).as_millis()).unwrap_or(u64::MAX));
        }
        at
    }

    fn busy(&self) -> bool {
        self.operations
            .iter()
            .any(|o| !TERMINAL.contains(&o.status))
    }

    fn ops_json(&self, opts: &Options, ids: &[String]) -> Vec<Value> {
        self.operations
            .iter()
            .filter(|o| ids.contains(&o.id))
            .map(|o| op_json(opts, o))
            .collect()
    }

    /// A finished restore: `data` becomes the branch's instance; returns what it replaced
    /// (or `data` itself when the branch is gone), for the caller to stop.
    fn install(&mut self, id: &str, data: Data, lsn: Option<String>) -> Option<Data> {
        let now = Utc::now();
        let Some(b) = self.branch_mut(id) else {
            return Some(data);
        };
        let old = b.data.replace(data);
        b.set_state("ready", None);
        if b.parent_lsn.is_none() && b.parent_id.is_some() {
            b.parent_lsn = lsn;
        }
        for ep in self.endpoints.iter_mut().filter(|e| e.branch_id == id) {
            ep.current_state = "active";
            ep.pending_state = None;
            ep.updated_at = now;
            ep.started_at = Some(now);
        }
        old
    }

    /// Finalizes a snapshot restore: the new branch takes the old one's name, endpoints,
    /// default flag and protection; the old one is renamed.
    fn finalize(
        &mut self,
        new_id: &str,
        old_id: &str,
        old_name: Option<String>,
    ) -> Result<(), String> {
        let (name, default, protected) = {
            let old = self
                .branch(old_id)
                .ok_or_else(|| format!("the branch {old_id} this restore replaces is gone"))?;
            (old.name.clone(), old.default, old.protected)
        };
        if self.branch(new_id).is_none() {
            return Err(format!("branch {new_id} is gone"));
        }
        let renamed = old_name.unwrap_or_else(|| self.free_name(&format!("{name} (old)")));
        let now = Utc::now();
        if let Some(old) = self.branch_mut(old_id) {
            old.name = renamed;
            old.default = false;
            old.protected = false;
            old.updated_at = now;
        }
        if let Some(new) = self.branch_mut(new_id) {
            new.name = name;
            new.default = default;
            new.protected = protected;
            new.restored_as = Some(old_id.to_owned());
            new.restore_status = Some("finalized");
            new.restore_target = None;
            new.updated_at = now;
        }
        for ep in &mut self.endpoints {
            if ep.branch_id == old_id {
                ep.branch_id = new_id.to_owned();
                ep.updated_at = now;
            } else if ep.branch_id == new_id {
                ep.branch_id = old_id.to_owned();
                ep.updated_at = now;
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// JSON shapes

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn precise(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

fn proxy_host(o: &Options) -> String {
    let region = o.region_id.strip_prefix("aws-").unwrap_or(&o.region_id);
    format!("{region}.aws.neon.tech")
}

fn put(v: &mut Value, key: &str, value: Option<Value>) {
    if let (Some(m), Some(x)) = (v.as_object_mut(), value) {
        m.insert(key.to_owned(), x);
    }
}

fn project_json(o: &Options, st: &State) -> Value {
    let now = Utc::now();
    let period_start = now.format("%Y-%m-01T00:00:00Z").to_string();
    json!({
        "id": o.project_id,
        "platform_id": "aws",
        "region_id": o.region_id,
        "name": st.project_name,
        "provisioner": "k8s-neonvm",
        "default_endpoint_settings": {
            "autoscaling_limit_min_cu": 0.25,
            "autoscaling_limit_max_cu": 2,
            "suspend_timeout_seconds": 0
        },
        "settings": {
            "allowed_ips": {"ips": [], "protected_branches_only": false},
            "enable_logical_replication": o.logical_replication,
            "quota": {}
        },
        "pg_version": o.pg_version,
        "proxy_host": proxy_host(o),
        "branch_logical_size_limit": 2_097_152,
        "branch_logical_size_limit_bytes": 2_199_023_255_552_i64,
        "store_passwords": true,
        "active_time": 0,
        "cpu_used_sec": 0,
        "creation_source": "console",
        "created_at": ts(st.project_created),
        "updated_at": ts(st.project_updated),
        "synthetic_storage_size": 0,
        "history_retention_seconds": st.retention,
        "owner_id": "fake-owner-0001",
        "owner": {
            "email": "owner@example.com",
            "name": "Fake Owner",
            "branches_limit": o.branches_limit,
            "subscription_type": "scale"
        },
        "compute_last_active_at": ts(now),
        "data_storage_bytes_hour": 0,
        "data_transfer_bytes": 0,
        "written_data_bytes": 0,
        "compute_time_seconds": 0,
        "active_time_seconds": 0,
        "consumption_period_start": period_start,
        "consumption_period_end": ts(now + TimeDelta::days(31))
    })
}

fn branch_json(o: &Options, b: &Branch) -> Value {
    let mut v = json!({
        "id": b.id,
        "project_id": o.project_id,
        "name": b.name,
        "current_state": b.current_state,
        "state_changed_at": ts(b.state_changed_at),
        "creation_source": "console",
        "primary": b.default,
        "default": b.default,
        "protected": b.protected,
        "cpu_used_sec": 0,
        "compute_time_seconds": 0,
        "active_time_seconds": 0,
        "written_data_bytes": 0,
        "data_transfer_bytes": 0,
        "created_at": ts(b.created_at),
        "updated_at": ts(b.updated_at),
        "created_by": {"name": "Fake Owner", "image": ""},
        "init_source": "parent-data"
    });
    put(&mut v, "parent_id", b.parent_id.clone().map(Value::from));
    put(&mut v, "parent_lsn", b.parent_lsn.clone().map(Value::from));
    put(
        &mut v,
        "parent_timestamp",
        b.parent_timestamp.clone().map(Value::from),
    );
    put(&mut v, "pending_state", b.pending_state.map(Value::from));
    put(
        &mut v,
        "logical_size",
        b.data.as_ref().map(|_| json!(31_440_896)),
    );
    put(
        &mut v,
        "last_reset_at",
        b.last_reset_at.map(|t| json!(ts(t))),
    );
    put(&mut v, "expires_at", b.expires_at.map(|t| json!(ts(t))));
    put(
        &mut v,
        "ttl_interval_seconds",
        b.expires_at
            .map(|t| json!((t - b.created_at).num_seconds())),
    );
    put(&mut v, "restore_status", b.restore_status.map(Value::from));
    put(
        &mut v,
        "restored_from",
        b.restored_from.clone().map(Value::from),
    );
    put(
        &mut v,
        "restored_as",
        b.restored_as.clone().map(Value::from),
    );
    v
}

fn endpoint_json(o: &Options, e: &Endpoint) -> Value {
    let proxy = proxy_host(o);
    let mut v = json!({
        "host": format!("{}.{proxy}", e.id),
        "id": e.id,
        "project_id": o.project_id,
        "branch_id": e.branch_id,
        "autoscaling_limit_min_cu": 0.25,
        "autoscaling_limit_max_cu": 2,
        "region_id": o.region_id,
        "type": "read_write",
        "current_state": e.current_state,
        "settings": {},
        "pooler_enabled": false,
        "pooler_mode": "transaction",
        "disabled": false,
        "passwordless_access": true,
        "creation_source": "console",
        "created_at": ts(e.created_at),
        "updated_at": ts(e.updated_at),
        "proxy_host": proxy,
        "suspend_timeout_seconds": 0,
        "provisioner": "k8s-neonvm",
        "compute_release_version": "fake"
    });
    put(&mut v, "pending_state", e.pending_state.map(Value::from));
    put(&mut v, "started_at", e.started_at.map(|t| json!(ts(t))));
    put(&mut v, "last_active", e.started_at.map(|t| json!(ts(t))));
    v
}

fn op_json(o: &Options, op: &Operation) -> Value {
    let duration = op
        .duration_ms
        .unwrap_or_else(|| u64::try_from(op.started.elapsed().as_millis()).unwrap_or(u64::MAX));
    let mut v = json!({
        "id": op.id,
        "project_id": o.project_id,
        "action": op.action,
        "status": op.status,
        "failures_count": 0,
        "created_at": ts(op.created_at),
        "updated_at": ts(op.updated_at),
        "total_duration_ms": duration
    });
    put(&mut v, "branch_id", op.branch_id.clone().map(Value::from));
    put(
        &mut v,
        "endpoint_id",
        op.endpoint_id.clone().map(Value::from),
    );
    put(&mut v, "error", op.error.clone().map(Value::from));
    v
}

fn snapshot_json(s: &Snapshot) -> Value {
    let mut v = json!({
        "id": s.id,
        "name": s.name,
        "source_branch_id": s.source_branch_id,
        "created_at": ts(s.created_at),
        "manual": s.manual
    });
    put(&mut v, "lsn", s.lsn.clone().map(Value::from));
    put(&mut v, "timestamp", s.timestamp.clone().map(Value::from));
    put(&mut v, "expires_at", s.expires_at.clone().map(Value::from));
    put(&mut v, "full_size", s.full_size.map(Value::from));
    v
}

fn database_json(branch: &str, created: DateTime<Utc>) -> Value {
    json!({
        "id": 1,
        "branch_id": branch,
        "name": DATABASE,
        "owner_name": ROLE,
        "created_at": ts(created),
        "updated_at": ts(created)
    })
}

fn role_json(branch: &str, created: DateTime<Utc>) -> Value {
    json!({
        "branch_id": branch,
        "name": ROLE,
        "protected": false,
        "created_at": ts(created),
        "updated_at": ts(created)
    })
}

// ---------------------------------------------------------------------------------------
// HTTP plumbing

#[derive(Debug)]
struct ApiError {
    status: u16,
    code: String,
    message: String,
}

impl ApiError {
    fn new(status: u16, code: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code: code.to_owned(),
            message: message.into(),
        }
    }
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::new(400, "", message)
}

fn not_found(message: impl Into<String>) -> ApiError {
    ApiError::new(404, "", message)
}

fn no_branch(id: &str) -> ApiError {
    not_found(format!("branch {id} not found"))
}

fn internal(message: impl Into<String>) -> ApiError {
    ApiError::new(500, "", message)
}

enum Reply {
    Json(u16, Value),
    NoContent,
}

type Res = Result<Reply, ApiError>;

fn ok(v: Value) -> Res {
    Ok(Reply::Json(200, v))
}

fn respond(
    status: u16,
    body: Option<Value>,
    request_id: &str,
    retry_after: Option<&str>,
) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = match body {
        Some(v) => (code, axum::Json(v)).into_response(),
        None => code.into_response(),
    };
    if let Ok(v) = HeaderValue::from_str(request_id) {
        resp.headers_mut().insert("x-neon-ret-request-id", v);
    }
    if let Some(r) = retry_after.and_then(|r| HeaderValue::from_str(r).ok()) {
        resp.headers_mut()
            .insert(axum::http::header::RETRY_AFTER, r);
    }
    resp
}

fn error_response(e: &ApiError, request_id: &str, retry_after: Option<&str>) -> Response {
    respond(
        e.status,
        Some(json!({"code": e.code, "message": e.message, "request_id": request_id})),
        request_id,
        retry_after,
    )
}

fn fault_error(f: &Fault) -> ApiError {
    let message = match f.status {
        429 => "rate limit exceeded".to_owned(),
        503 => "service unavailable".to_owned(),
        423 => LOCKED.to_owned(),
        s => format!("injected error (HTTP {s})"),
    };
    ApiError::new(f.status, "", message)
}

/// Decodes `%XX` (and `+` as a space when `form`).
fn pct_decode(s: &str, form: bool) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
                {
                    Ok(x) => {
                        out.push(x);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' if form => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The query parameters; any not in `allowed` is a 400 (the client is checked against the
/// spec).
fn query_map(q: &str, allowed: &[&str]) -> Result<BTreeMap<String, String>, ApiError> {
    let mut m = BTreeMap::new();
    for pair in q.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (k, v) = (pct_decode(k, true), pct_decode(v, true));
        if !allowed.contains(&k.as_str()) {
            return Err(bad(format!(
                "unknown query parameter {k:?} (accepted here: {})",
                allowed.join(", ")
            )));
        }
        m.insert(k, v);
    }
    Ok(m)
}

fn decode_req<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(bad("a JSON request body is required"));
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let v: T = serde_path_to_error::deserialize(&mut de)
        .map_err(|e| bad(format!("invalid request body: {}: {}", e.path(), e.inner())))?;
    de.end()
        .map_err(|e| bad(format!("invalid request body: {e}")))?;
    Ok(v)
}

fn decode_opt<T: DeserializeOwned>(body: &Bytes) -> Result<Option<T>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    decode_req(body).map(Some)
}

/// `Some(None)` for an explicit `null`, `None` (with `#[serde(default)]`) when absent.
fn nullable<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

async fn handle(
    AxState(app): AxState<App>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let arrived = Instant::now();
    let half_latency = Duration::from_millis(app.opts.api_latency_ms) / 2;
    if !half_latency.is_zero() {
        tokio::time::sleep(half_latency).await;
    }
    let request_id = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .unwrap_or_else(|| app.st().uuid());
    let query = uri.query().unwrap_or("").to_owned();
    let api_path = uri.path().strip_prefix("/api/v2").map(str::to_owned);
    let authorized = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        == Some(format!("Bearer {}", app.opts.api_key).as_str());
    let body_json = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        serde_json::from_slice(&body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()))
    };
    let mutating = matches!(method.as_str(), "POST" | "PATCH" | "PUT" | "DELETE");
    let (fault, locked, index) = {
        let mut st = app.st();
        let served = st.refresh();
        st.requests.push(Recorded {
            method: method.as_str().to_owned(),
            path: api_path.clone().unwrap_or_else(|| uri.path().to_owned()),
            query: query.clone(),
            body: body_json,
            authorized,
            status: 0,
            arrived,
            served,
            answered: None,
        });
        let fault = match &api_path {
            Some(p) if authorized => {
                let i = st.faults.iter().position(|f| {
                    f.times > 0
                        && f.method.eq_ignore_ascii_case(method.as_str())
                        && p.contains(&f.path_contains)
                });
                i.map(|i| {
                    let f = st.faults[i].clone();
                    if !f.apply {
                        take_fault(&mut st.faults, i);
                    }
                    f
                })
            }
            _ => None,
        };
        let index = st.requests.len() - 1;
        (fault, mutating && app.opts.lock_423 && st.busy(), index)
    };
    let resp = serve(
        &app,
        &method,
        &uri,
        api_path,
        &query,
        &body,
        &request_id,
        authorized,
        fault,
        locked,
    )
    .await;
    if !half_latency.is_zero() {
        tokio::time::sleep(half_latency).await;
    }
    if let Some(r) = app.st().requests.get_mut(index) {
        r.status = resp.status().as_u16();
        r.answered = Some(Instant::now());
    }
    resp
}

/// Serves a recorded request.
#[allow(clippy::too_many_arguments)]
async fn serve(
    app: &App,
    method: &Method,
    uri: &Uri,
    api_path: Option<String>,
    query: &str,
    body: &Bytes,
    request_id: &str,
    authorized: bool,
    fault: Option<Fault>,
    locked: bool,
) -> Response {
    let Some(path) = api_path else {
        return error_response(
            &not_found(format!("not found: {}", uri.path())),
            request_id,
            None,
        );
    };
    if !authorized {
        return error_response(
            &ApiError::new(401, "", "authorization failed"),
            request_id,
            None,
        );
    }
    if let Some(f) = fault.as_ref().filter(|f| !f.apply) {
        return error_response(&fault_error(f), request_id, f.retry_after.as_deref());
    }
    if locked {
        return error_response(&ApiError::new(423, "", LOCKED), request_id, None);
    }
    let segs: Vec<String> = path
        .trim_matches('/')
        .split('/')
        .map(|s| pct_decode(s, false))
        .collect();
    let result = route(app, method, &segs, query, body).await;
    if let (Some(f), Ok(_)) = (fault.as_ref().filter(|f| f.apply), &result) {
        let mut st = app.st();
        if let Some(i) = st.faults.iter().position(|x| {
            x.times > 0
                && x.method == f.method
                && x.path_contains == f.path_contains
                && x.status == f.status
                && x.apply
        }) {
            take_fault(&mut st.faults, i);
        }
        drop(st);
        return error_response(&fault_error(f), request_id, f.retry_after.as_deref());
    }
    match result {
        Ok(Reply::Json(status, v)) => respond(status, Some(v), request_id, None),
        Ok(Reply::NoContent) => respond(204, None, request_id, None),
        Err(e) => error_response(&e, request_id, None),
    }
}

fn take_fault(faults: &mut Vec<Fault>, i: usize) {
    faults[i].times -= 1;
    if faults[i].times == 0 {
        faults.remove(i);
    }
}

async fn route(app: &App, method: &Method, segs: &[String], q: &str, body: &Bytes) -> Res {
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let no_route = || not_found(format!("no such API route: {method} /{}", segs.join("/")));
    let ["projects", project, rest @ ..] = s.as_slice() else {
        return Err(no_route());
    };
    if *project != app.opts.project_id {
        return Err(not_found(format!("project {project} not found")));
    }
    let none = |q: &str| query_map(q, &[]).map(|_| ());
    match (method.as_str(), rest) {
        ("GET", []) => {
            none(q)?;
            let st = app.st();
            ok(json!({"project": project_json(&app.opts, &st)}))
        }
        ("PATCH", []) => patch_project(app, q, body),
        ("GET", ["branches"]) => list_branches(app, q),
        ("POST", ["branches"]) => {
            none(q)?;
            create_branch(app, body).await
        }
        ("GET", ["branches", "count"]) => {
            let m = query_map(q, &["search"])?;
            let st = app.st();
            let n = st
                .branches
                .iter()
                .filter(|b| matches_search(b, m.get("search")))
                .count();
            ok(json!({"count": n}))
        }
        ("GET", ["branches", b]) => {
            none(q)?;
            let st = app.st();
            let br = st.branch(b).ok_or_else(|| no_branch(b))?;
            let mut v = json!({"branch": branch_json(&app.opts, br)});
            put(&mut v, "annotation", annotation_json(br));
            ok(v)
        }
        ("PATCH", ["branches", b]) => {
            none(q)?;
            patch_branch(app, b, body)
        }
        ("DELETE", ["branches", b]) => delete_branch(app, b, q),
        ("POST", ["branches", b, "restore"]) => {
            none(q)?;
            restore_branch(app, b, body).await
        }
        ("POST", ["branches", b, "set_as_default"]) => {
            none(q)?;
            set_default(app, b)
        }
        ("POST", ["branches", b, "finalize_restore"]) => {
            none(q)?;
            finalize_restore(app, b, body)
        }
        ("GET", ["branches", b, "endpoints"]) => {
            none(q)?;
            let st = app.st();
            st.branch(b).ok_or_else(|| no_branch(b))?;
            let eps: Vec<Value> = st
                .endpoints
                .iter()
                .filter(|e| e.branch_id == *b)
                .map(|e| endpoint_json(&app.opts, e))
                .collect();
            ok(json!({"endpoints": eps}))
        }
        ("GET", ["branches", b, "databases"]) => {
            none(q)?;
            let st = app.st();
            let br = st.branch(b).ok_or_else(|| no_branch(b))?;
            ok(json!({"databases": [database_json(b, br.created_at)]}))
        }
        ("GET", ["branches", b, "roles"]) => {
            none(q)?;
            let st = app.st();
            let br = st.branch(b).ok_or_else(|| no_branch(b))?;
            ok(json!({"roles": [role_json(b, br.created_at)]}))
        }
        ("GET", ["branches", b, "roles", r]) => {
            none(q)?;
            let st = app.st();
            let br = st.branch(b).ok_or_else(|| no_branch(b))?;
            if *r != ROLE {
                return Err(not_found(format!("role {r} not found")));
            }
            ok(json!({"role": role_json(b, br.created_at)}))
        }
        ("GET", ["branches", b, "roles", r, "reveal_password"]) => {
            none(q)?;
            let st = app.st();
            st.branch(b).ok_or_else(|| no_branch(b))?;
            if *r != ROLE {
                return Err(not_found(format!("role {r} not found")));
            }
            ok(json!({"password": PASSWORD}))
        }
        ("GET", ["branches", b, "compare_schema"]) => compare_schema(app, b, q).await,
        ("GET", ["branches", b, "backup_schedule"]) => {
            none(q)?;
            let st = app.st();
            let br = st.branch(b).ok_or_else(|| no_branch(b))?;
            ok(json!({"schedule": br.schedule}))
        }
        ("PUT", ["branches", b, "backup_schedule"]) => {
            none(q)?;
            put_schedule(app, b, body)
        }
        ("POST", ["branches", b, "snapshot"]) => create_snapshot(app, b, q, body).await,
        ("POST", ["endpoints"]) => {
            none(q)?;
            create_endpoint(app, body)
        }
        ("GET", ["endpoints"]) => {
            none(q)?;
            let st = app.st();
            let eps: Vec<Value> = st
                .endpoints
                .iter()
                .map(|e| endpoint_json(&app.opts, e))
                .collect();
            ok(json!({"endpoints": eps}))
        }
        ("GET", ["endpoints", e]) => {
            none(q)?;
            let st = app.st();
            let ep = st
                .endpoints
                .iter()
                .find(|x| x.id == *e)
                .ok_or_else(|| not_found(format!("endpoint {e} not found")))?;
            ok(json!({"endpoint": endpoint_json(&app.opts, ep)}))
        }
        ("GET", ["connection_uri"]) => connection_uri(app, q),
        ("GET", ["operations"]) => list_operations(app, q),
        ("GET", ["operations", id]) => {
            none(q)?;
            let st = app.st();
            let o = st
                .operations
                .iter()
                .find(|o| o.id == *id)
                .ok_or_else(|| not_found(format!("operation {id} not found")))?;
            ok(json!({"operation": op_json(&app.opts, o)}))
        }
        ("GET", ["snapshots"]) => {
            none(q)?;
            let st = app.st();
            let list: Vec<Value> = st.snapshots.iter().map(snapshot_json).collect();
            ok(json!({"snapshots": list}))
        }
        ("PATCH", ["snapshots", id]) => {
            none(q)?;
            patch_snapshot(app, id, body)
        }
        ("DELETE", ["snapshots", id]) => {
            none(q)?;
            delete_snapshot(app, id)
        }
        ("POST", ["snapshots", id, "restore"]) => restore_snapshot(app, id, q, body),
        _ => Err(no_route()),
    }
}

// ---------------------------------------------------------------------------------------
// request shapes (strict: an unknown field is a 400)

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProjectUpdateRequest {
    project: ProjectUpdate,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProjectUpdate {
    name: Option<String>,
    history_retention_seconds: Option<i64>,
    settings: Option<Value>,
    default_endpoint_settings: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct BranchCreateRequest {
    branch: Option<BranchCreate>,
    endpoints: Option<Vec<EndpointOptions>>,
    annotation_value: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct BranchCreate {
    parent_id: Option<String>,
    name: Option<String>,
    parent_lsn: Option<String>,
    parent_timestamp: Option<String>,
    protected: Option<bool>,
    archived: Option<bool>,
    init_source: Option<String>,
    expires_at: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EndpointOptions {
    #[serde(rename = "type")]
    kind: String,
    settings: Option<Value>,
    autoscaling_limit_min_cu: Option<f64>,
    autoscaling_limit_max_cu: Option<f64>,
    provisioner: Option<String>,
    suspend_timeout_seconds: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BranchUpdateRequest {
    branch: BranchUpdate,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BranchUpdate {
    name: Option<String>,
    protected: Option<bool>,
    #[serde(default, deserialize_with = "nullable")]
    expires_at: Option<Option<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BranchRestoreRequest {
    source_branch_id: String,
    source_lsn: Option<String>,
    source_timestamp: Option<String>,
    preserve_under_name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FinalizeRestoreRequest {
    name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SnapshotCreate {
    timestamp: Option<String>,
    lsn: Option<String>,
    name: Option<String>,
    expires_at: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SnapshotUpdateRequest {
    snapshot: SnapshotUpdate,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SnapshotUpdate {
    name: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    expires_at: Option<Option<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SnapshotRestoreRequest {
    name: Option<String>,
    target_branch_id: Option<String>,
    finalize_restore: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BackupSchedule {
    schedule: Vec<ScheduleItem>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct ScheduleItem {
    frequency: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    hour: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    day: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    month: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retention_seconds: Option<i64>,
}

// ---------------------------------------------------------------------------------------
// validation helpers

fn parse_time(text: &str, what: &str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            bad(format!(
                "{what} {text:?} is not an RFC 3339 timestamp with a time zone (e.g. 2026-01-02T03:04:05Z)"
            ))
        })
}

/// `expires_at` of a branch: RFC 3339 with a zone, whole seconds, future, ≤ 30 days ahead.
fn check_expires(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, ApiError> {
    let t = parse_time(text, "expires_at")?;
    if text.contains('.') {
        return Err(bad(format!(
            "expires_at {text:?} must have second precision"
        )));
    }
    if t <= now {
        return Err(bad(format!("expires_at {text} must be in the future")));
    }
    if t > now + TimeDelta::days(30) {
        return Err(bad(format!(
            "expires_at {text} must be at most 30 days ahead"
        )));
    }
    Ok(t)
}

fn check_name(name: &str) -> Result<(), ApiError> {
    if name.is_empty() || name.chars().count() > 256 {
        return Err(bad("a branch name must be 1 to 256 characters long"));
    }
    Ok(())
}

fn parse_lsn(text: &str) -> Option<u64> {
    let (hi, lo) = text.split_once('/')?;
    let ok = |p: &str| (1..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_hexdigit());
    if !ok(hi) || !ok(lo) {
        return None;
    }
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}

fn matches_search(b: &Branch, search: Option<&String>) -> bool {
    search.is_none_or(|s| b.name.contains(s.as_str()) || b.id.contains(s.as_str()))
}

fn annotation_json(b: &Branch) -> Option<Value> {
    (!b.annotation.is_empty()).then(|| {
        json!({
            "object": {"type": "console/branch", "id": b.id},
            "value": b.annotation,
            "created_at": ts(b.created_at),
            "updated_at": ts(b.updated_at)
        })
    })
}

/// Where a restore should stop: a timestamp or LSN on a branch's history.
#[derive(Debug, Clone)]
struct Point {
    /// For `restore_into`: RFC 3339 (precise) or `X/Y`.
    target: String,
    timestamp: Option<String>,
    lsn: Option<String>,
}

/// Checks a timestamp or LSN against the restore window and the branch's history.
async fn resolve_point(
    app: &App,
    data: Option<&Data>,
    branch_id: &str,
    timestamp: Option<&str>,
    lsn: Option<&str>,
) -> Result<Option<Point>, ApiError> {
    if timestamp.is_none() && lsn.is_none() {
        return Ok(None);
    }
    if timestamp.is_some() && lsn.is_some() {
        return Err(bad("give either a timestamp or an LSN, not both"));
    }
    let now = Utc::now();
    let retention = app.st().retention;
    if let Some(text) = timestamp {
        let t = parse_time(text, "timestamp")?;
        if t > now {
            return Err(bad(format!("timestamp {text} is in the future")));
        }
        let earliest = now - TimeDelta::seconds(retention);
        if t < earliest {
            return Err(bad(format!(
                "timestamp {text} is outside the restore window: the project keeps {retention} seconds of history (history_retention_seconds), so the earliest restorable point is {}",
                ts(earliest)
            )));
        }
    }
    let Some((data, hist)) = data.and_then(|d| d.history.as_ref().map(|h| (d, h))) else {
        return Err(bad(format!(
            "branch {branch_id} has no point-in-time history: the fake keeps WAL history only for the project's original root branch (use the branch's head instead)"
        )));
    };
    if let Some(text) = timestamp {
        let t = parse_time(text, "timestamp")?;
        if t < hist.began {
            return Err(bad(format!(
                "timestamp {text} is before the fake project's history began ({})",
                precise(hist.began)
            )));
        }
        return Ok(Some(Point {
            target: precise(t),
            timestamp: Some(text.to_owned()),
            lsn: None,
        }));
    }
    let text = lsn.unwrap_or_default();
    let value = parse_lsn(text).ok_or_else(|| {
        bad(format!(
            "invalid LSN {text:?}: expected X/Y in hex, e.g. 0/1DE2850"
        ))
    })?;
    if value < hist.began_lsn {
        return Err(bad(format!(
            "LSN {text} is before the fake project's history began ({:X}/{:X})",
            hist.began_lsn >> 32,
            hist.began_lsn & 0xffff_ffff
        )));
    }
    let current = current_lsn(&app.bin, data).await.map_err(internal)?;
    if value > parse_lsn(&current).unwrap_or(u64::MAX) {
        return Err(bad(format!(
            "LSN {text} is ahead of the branch's current LSN {current}"
        )));
    }
    Ok(Some(Point {
        target: text.to_owned(),
        timestamp: None,
        lsn: Some(text.to_owned()),
    }))
}

// ---------------------------------------------------------------------------------------
// handlers

fn patch_project(app: &App, q: &str, body: &Bytes) -> Res {
    query_map(q, &[])?;
    let req: ProjectUpdateRequest = decode_req(body)?;
    let p = req.project;
    if let Some(r) = p.history_retention_seconds {
        if !(0..=2_592_000).contains(&r) {
            return Err(bad(format!(
                "history_retention_seconds must be between 0 and 2592000, not {r}"
            )));
        }
        if r > app.opts.plan_max_retention_seconds {
            return Err(bad(format!(
                "requested history retention seconds exceeds allowed maximum; requested_history_retention_seconds:\"{r}\", max:\"{}\"",
                app.opts.plan_max_retention_seconds
            )));
        }
    }
    if let Some(n) = &p.name {
        if n.is_empty() || n.len() > 64 {
            return Err(bad("a project name must be 1 to 64 characters long"));
        }
    }
    let mut st = app.st();
    let default = st
        .default_branch()
        .map(|b| b.id.clone())
        .unwrap_or_default();
    let specs = if p.history_retention_seconds.is_some() {
        vec![op("apply_storage_config", &default, None)]
    } else {
        Vec::new()
    };
    let (ops, doomed) = st.add_ops(specs);
    if !doomed {
        if let Some(r) = p.history_retention_seconds {
            st.retention = r;
        }
        if let Some(n) = p.name {
            st.project_name = n;
        }
        st.project_updated = Utc::now();
        st.finish(&ops, &Ok(()));
    }
    let v = json!({"project": project_json(&app.opts, &st), "operations": st.ops_json(&app.opts, &ops)});
    ok(v)
}

fn list_branches(app: &App, q: &str) -> Res {
    let q = query_map(
        q,
        &[
            "cursor",
            "limit",
            "sort_by",
            "sort_order",
            "search",
            "include_deleted",
        ],
    )?;
    let sort_by = q.get("sort_by").map_or("updated_at", String::as_str);
    if !["name", "created_at", "updated_at"].contains(&sort_by) {
        return Err(bad(format!(
            "invalid sort_by {sort_by:?}: expected name, created_at or updated_at"
        )));
    }
    let sort_order = q.get("sort_order").map_or("desc", String::as_str);
    if !["asc", "desc"].contains(&sort_order) {
        return Err(bad(format!(
            "invalid sort_order {sort_order:?}: expected asc or desc"
        )));
    }
    let limit = match q.get("limit") {
        None => None,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=10_000).contains(&n) => Some(n),
            _ => return Err(bad(format!("invalid limit {l:?}: expected 1 to 10000"))),
        },
    };
    if let Some(d) = q.get("include_deleted") {
        if d != "true" && d != "false" {
            return Err(bad(format!("invalid include_deleted {d:?}")));
        }
    }
    let st = app.st();
    let mut list: Vec<&Branch> = st
        .branches
        .iter()
        .filter(|b| matches_search(b, q.get("search")))
        .collect();
    list.sort_by(|a, b| {
        match sort_by {
            "name" => a.name.cmp(&b.name),
            "created_at" => a.created_at.cmp(&b.created_at),
            _ => a.updated_at.cmp(&b.updated_at),
        }
        .then_with(|| a.id.cmp(&b.id))
    });
    if sort_order == "desc" {
        list.reverse();
    }
    let start = match q.get("cursor") {
        None => 0,
        Some(c) => {
            let id = decode_cursor(c).ok_or_else(|| bad(format!("invalid cursor {c:?}")))?;
            list.iter()
                .position(|b| b.id == id)
                .map(|i| i + 1)
                .ok_or_else(|| bad(format!("invalid cursor {c:?}: its branch is gone")))?
        }
    };
    let end = limit.map_or(list.len(), |l| (start + l).min(list.len()));
    let page = list.get(start..end).unwrap_or_default();
    let mut pagination = json!({"sort_by": sort_by, "sort_order": sort_order});
    if end < list.len() {
        put(
            &mut pagination,
            "next",
            page.last().map(|b| Value::from(encode_cursor(&b.id))),
        );
    }
    let annotations: serde_json::Map<String, Value> = page
        .iter()
        .filter_map(|b| annotation_json(b).map(|a| (b.id.clone(), a)))
        .collect();
    let branches: Vec<Value> = page.iter().map(|b| branch_json(&app.opts, b)).collect();
    ok(json!({"branches": branches, "annotations": annotations, "pagination": pagination}))
}

fn encode_cursor(id: &str) -> String {
    id.bytes().map(|b| format!("{b:02x}")).collect()
}

fn decode_cursor(c: &str) -> Option<String> {
    if !c.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..c.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(c.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

async fn create_branch(app: &App, body: &Bytes) -> Res {
    let req: BranchCreateRequest = decode_opt(body)?.unwrap_or_default();
    let fields = req.branch.unwrap_or_default();
    let mut read_write = 0;
    for e in req.endpoints.iter().flatten() {
        match e.kind.as_str() {
            "read_write" => read_write += 1,
            "read_only" => return Err(bad("read_only endpoints are not supported by the fake")),
            other => {
                return Err(bad(format!(
                    "invalid endpoint type {other:?}: expected read_write or read_only"
                )))
            }
        }
    }
    if read_write > 1 {
        return Err(bad("a branch can have only one read_write endpoint"));
    }
    if fields.archived == Some(true) {
        return Err(bad(
            "creating archived branches is not supported by the fake",
        ));
    }
    match fields.init_source.as_deref() {
        None | Some("parent-data") => {}
        Some("schema-only") => {
            return Err(bad("init_source schema-only is not supported by the fake"))
        }
        Some(other) => {
            return Err(bad(format!(
                "invalid init_source {other:?}: expected parent-data or schema-only"
            )))
        }
    }
    if let Some(n) = &fields.name {
        check_name(n)?;
    }
    if fields.parent_lsn.is_some() && fields.parent_timestamp.is_some() {
        return Err(bad(
            "parent_lsn and parent_timestamp are mutually exclusive",
        ));
    }
    let now = Utc::now();
    let expires = fields
        .expires_at
        .as_deref()
        .map(|t| check_expires(t, now))
        .transpose()?;
    if expires.is_some() && fields.protected == Some(true) {
        return Err(bad("a protected branch cannot have an expiration time"));
    }
    if req.annotation_value.as_ref().is_some_and(|a| a.len() > 50) {
        return Err(bad("annotation_value may have at most 50 keys"));
    }
    let (parent_id, parent_data) = {
        let st = app.st();
        let parent = match fields.parent_id.as_deref().filter(|p| !p.is_empty()) {
            Some(p) => st.branch(p).ok_or_else(|| no_branch(p))?,
            None => st
                .default_branch()
                .ok_or_else(|| internal("the project has no default branch"))?,
        };
        if parent.expires_at.is_some() {
            return Err(bad(format!(
                "branch {} has an expiration time: children cannot be created from it",
                parent.id
            )));
        }
        (parent.id.clone(), parent.data.clone())
    };
    let point = resolve_point(
        app,
        parent_data.as_ref(),
        &parent_id,
        fields.parent_timestamp.as_deref(),
        fields.parent_lsn.as_deref(),
    )
    .await?;
    let (resp, id, ops, doomed) = {
        let mut st = app.st();
        if st.branch(&parent_id).is_none() {
            return Err(no_branch(&parent_id));
        }
        st.check_limit(app.opts.branches_limit, 1)?;
        let id = st.word_id("br");
        let name = fields.name.clone().unwrap_or_else(|| id.clone());
        st.check_name_free(&name, None)?;
        let mut b = Branch::new(&id, &name, Some(parent_id.clone()), now);
        b.protected = fields.protected.unwrap_or(false);
        b.expires_at = expires;
        b.parent_timestamp = point.as_ref().and_then(|p| p.timestamp.clone());
        b.parent_lsn = point.as_ref().and_then(|p| p.lsn.clone());
        b.annotation = req.annotation_value.unwrap_or_default();
        b.set_state("init", Some("ready"));
        let mut specs = vec![op("create_branch", &id, None)];
        let mut endpoint = None;
        if read_write == 1 {
            let ep = st.new_endpoint(&id, now);
            specs.push(op("start_compute", &id, Some(&ep.id)));
            endpoint = Some(ep);
        }
        let (ops, doomed) = st.add_ops(specs);
        let mut resp = json!({
            "branch": branch_json(&app.opts, &b),
            "endpoints": endpoint.iter().map(|e| endpoint_json(&app.opts, e)).collect::<Vec<_>>(),
            "operations": st.ops_json(&app.opts, &ops),
            "roles": [role_json(&id, now)],
            "databases": [database_json(&id, now)]
        });
        if let Some(ep) = &endpoint {
            put(
                &mut resp,
                "connection_uris",
                Some(json!([{
                    "connection_uri": app.ep_uri(&ep.id, ROLE, DATABASE),
                    "connection_parameters": {
                        "database": DATABASE,
                        "password": PASSWORD,
                        "role": ROLE,
                        "host": format!("{}.{}", ep.id, proxy_host(&app.opts)),
                        "pooler_host": format!("{}-pooler.{}", ep.id, proxy_host(&app.opts))
                    }
                }])),
            );
        }
        if doomed {
            b.pending_state = None;
        }
        st.branches.push(b);
        st.endpoints.extend(endpoint);
        app.relink(&st);
        (resp, id, ops, doomed)
    };
    if !doomed {
        let a = app.clone();
        spawn_job(app, ops, async move {
            let r: Result<(), String> = async {
                let parent = match parent_data {
                    Some(d) => d,
                    None => wait_data(&a, &parent_id).await?,
                };
                let source = match point {
                    Some(p) => Source::Pitr(parent, p.target),
                    None => Source::Head(parent),
                };
                let (data, lsn) = make_data(&a, source).await?;
                let leftover = {
                    let mut st = a.st();
                    let leftover = st.install(&id, data, Some(lsn));
                    a.relink(&st);
                    leftover
                };
                discard(leftover).await;
                Ok(())
            }
            .await;
            if r.is_err() {
                if let Some(b) = a.st().branch_mut(&id) {
                    b.pending_state = None;
                }
            }
            r
        });
    }
    Ok(Reply::Json(201, resp))
}

fn patch_branch(app: &App, id: &str, body: &Bytes) -> Res {
    let req: BranchUpdateRequest = decode_req(body)?;
    let u = req.branch;
    let now = Utc::now();
    let mut st = app.st();
    let (is_default, protected, expires) = {
        let b = st.branch(id).ok_or_else(|| no_branch(id))?;
        (b.default, b.protected, b.expires_at)
    };
    if let Some(n) = &u.name {
        check_name(n)?;
        st.check_name_free(n, Some(id))?;
    }
    let new_expires = match &u.expires_at {
        None => expires,
        Some(None) => None,
        Some(Some(t)) => {
            let t = check_expires(t, now)?;
            if is_default {
                return Err(bad("the default branch cannot have an expiration time"));
            }
            if st.has_children(id) {
                return Err(bad("a branch with children cannot have an expiration time"));
            }
            Some(t)
        }
    };
    if u.protected.unwrap_or(protected) && new_expires.is_some() {
        return Err(bad("a protected branch cannot have an expiration time"));
    }
    let b = st.branch_mut(id).ok_or_else(|| no_branch(id))?;
    if let Some(n) = u.name {
        b.name = n;
    }
    if let Some(p) = u.protected {
        b.protected = p;
    }
    b.expires_at = new_expires;
    b.updated_at = now;
    ok(json!({"branch": branch_json(&app.opts, b), "operations": []}))
}

fn delete_branch(app: &App, id: &str, q: &str) -> Res {
    let q = query_map(q, &["hard_delete"])?;
    if let Some(h) = q.get("hard_delete") {
        if h != "true" && h != "false" {
            return Err(bad(format!("invalid hard_delete {h:?}")));
        }
    }
    let mut st = app.st();
    let Some(b) = st.branch(id) else {
        return if st.deleted_branches.contains(id) {
            Ok(Reply::NoContent)
        } else {
            Err(no_branch(id))
        };
    };
    if b.default {
        return Err(bad(format!(
            "branch {id} is the project's default branch and cannot be deleted"
        )));
    }
    if st.has_children(id) {
        return Err(ApiError::new(
            422,
            "",
            format!("branch {id} has children: delete them first"),
        ));
    }
    if b.parent_id.is_none() && st.branches.iter().filter(|x| x.parent_id.is_none()).count() <= 1 {
        return Err(bad(format!(
            "branch {id} is the project's only root branch and cannot be deleted"
        )));
    }
    let branch = branch_json(&app.opts, b);
    let endpoints = st.endpoint_ids(id);
    let mut specs: Vec<OpSpec> = endpoints
        .iter()
        .map(|e| op("suspend_compute", id, Some(e)))
        .collect();
    specs.push(op("delete_timeline", id, None));
    let (ops, doomed) = st.add_ops(specs);
    let resp = json!({"branch": branch, "operations": st.ops_json(&app.opts, &ops)});
    if doomed {
        return ok(resp);
    }
    let data = st
        .branches
        .iter()
        .position(|x| x.id == id)
        .and_then(|i| st.branches.remove(i).data);
    st.endpoints.retain(|e| e.branch_id != id);
    st.deleted_branches.insert(id.to_owned());
    for e in &endpoints {
        let _ = std::fs::remove_dir_all(app.ep_dir(e));
    }
    drop(st);
    spawn_job(app, ops, async move {
        if let Some(d) = data {
            d.handle
                .stop_and_remove()
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    });
    ok(resp)
}

async fn restore_branch(app: &App, target_id: &str, body: &Bytes) -> Res {
    let req: BranchRestoreRequest = decode_req(body)?;
    let self_restore = req.source_branch_id == target_id;
    let (source_data, has_children) = {
        let st = app.st();
        let target = st.branch(target_id).ok_or_else(|| no_branch(target_id))?;
        let source = st
            .branch(&req.source_branch_id)
            .ok_or_else(|| no_branch(&req.source_branch_id))?;
        if target.current_state != "ready" || target.pending_state.is_some() {
            return Err(ApiError::new(
                409,
                "",
                format!(
                    "branch {target_id} is not ready (current_state {})",
                    target.current_state
                ),
            ));
        }
        (source.data.clone(), st.has_children(target_id))
    };
    if self_restore && req.source_timestamp.is_none() && req.source_lsn.is_none() {
        return Err(bad(
            "restoring a branch onto itself needs source_timestamp or source_lsn",
        ));
    }
    if req.preserve_under_name.is_none() {
        if self_restore {
            return Err(bad(
                "preserve_under_name is required when restoring a branch onto itself",
            ));
        }
        if has_children {
            return Err(bad(format!(
                "preserve_under_name is required: branch {target_id} has children"
            )));
        }
    }
    if let Some(n) = &req.preserve_under_name {
        check_name(n)?;
    }
    let point = resolve_point(
        app,
        source_data.as_ref(),
        &req.source_branch_id,
        req.source_timestamp.as_deref(),
        req.source_lsn.as_deref(),
    )
    .await?;
    let now = Utc::now();
    let (resp, ops, doomed, preserved, undo) = {
        let mut st = app.st();
        if st.branch(target_id).is_none() {
            return Err(no_branch(target_id));
        }
        let preserved = match &req.preserve_under_name {
            Some(name) => {
                st.check_limit(app.opts.branches_limit, 1)?;
                st.check_name_free(name, None)?;
                Some((st.word_id("br"), name.clone()))
            }
            None => None,
        };
        let endpoints = st.endpoint_ids(target_id);
        let mut specs: Vec<OpSpec> = endpoints
            .iter()
            .map(|e| op("suspend_compute", target_id, Some(e)))
            .collect();
        if let Some((pid, _)) = &preserved {
            specs.push(op("create_branch", pid, None));
        }
        specs.push(op("create_timeline", target_id, None));
        specs.extend(
            endpoints
                .iter()
                .map(|e| op("start_compute", target_id, Some(e))),
        );
        let (ops, doomed) = st.add_ops(specs);
        // (children moved, the target's former parent) to put back if the restore fails
        let mut undo: (Vec<String>, Option<String>) = (Vec::new(), None);
        if !doomed {
            let target = st.branch(target_id).expect("target");
            let (old_parent, parent_lsn, parent_timestamp) = (
                target.parent_id.clone(),
                target.parent_lsn.clone(),
                target.parent_timestamp.clone(),
            );
            if let Some((pid, name)) = &preserved {
                // children move under the preserved branch; a child target becomes its child
                for b in st
                    .branches
                    .iter_mut()
                    .filter(|b| b.parent_id.as_deref() == Some(target_id))
                {
                    b.parent_id = Some(pid.clone());
                    undo.0.push(b.id.clone());
                }
                let mut p = Branch::new(pid, name, old_parent.clone(), now);
                p.parent_lsn = parent_lsn;
                p.parent_timestamp = parent_timestamp;
                p.set_state("init", Some("ready"));
                st.branches.push(p);
                if old_parent.is_some() {
                    undo.1 = old_parent;
                    if let Some(t) = st.branch_mut(target_id) {
                        t.parent_id = Some(pid.clone());
                    }
                }
            }
            if let Some(t) = st.branch_mut(target_id) {
                t.set_state("resetting", Some("ready"));
                t.last_reset_at = Some(now);
            }
        }
        let target = st.branch(target_id).expect("target");
        let resp = json!({
            "branch": branch_json(&app.opts, target),
            "operations": st.ops_json(&app.opts, &ops)
        });
        (resp, ops, doomed, preserved.map(|(id, _)| id), undo)
    };
    if !doomed {
        let a = app.clone();
        let target = target_id.to_owned();
        let source_id = req.source_branch_id.clone();
        spawn_job(app, ops, async move {
            let r: Result<(), String> = async {
                let source = match source_data {
                    Some(d) => d,
                    None => wait_data(&a, &source_id).await?,
                };
                let source = match point {
                    Some(p) => Source::Pitr(source, p.target),
                    None => Source::Head(source),
                };
                let (data, _) = make_data(&a, source).await?;
                let leftovers = {
                    let mut st = a.st();
                    let old = st.install(&target, data, None);
                    let mut leftovers = Vec::new();
                    match (&preserved, old) {
                        (Some(pid), Some(old)) if st.branch(&target).is_some() => {
                            match st.branch_mut(pid) {
                                Some(p) => {
                                    p.data = Some(old);
                                    p.set_state("ready", None);
                                }
                                None => leftovers.push(old),
                            }
                        }
                        (_, old) => leftovers.extend(old),
                    }
                    a.relink(&st);
                    leftovers
                };
                for d in leftovers {
                    discard(Some(d)).await;
                }
                Ok(())
            }
            .await;
            if r.is_err() {
                let mut st = a.st();
                if let Some(t) = st.branch_mut(&target) {
                    t.set_state("ready", None);
                    if let Some(p) = undo.1.clone() {
                        t.parent_id = Some(p);
                    }
                }
                if let Some(pid) = &preserved {
                    st.branches.retain(|b| &b.id != pid);
                }
                for b in st.branches.iter_mut().filter(|b| undo.0.contains(&b.id)) {
                    b.parent_id = Some(target.clone());
                }
            }
            r
        });
    }
    ok(resp)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EndpointCreateRequest {
    endpoint: EndpointCreate,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // fields are accepted (the spec allows them) but not modelled
struct EndpointCreate {
    branch_id: String,
    #[serde(rename = "type")]
    kind: String,
    region_id: Option<String>,
    settings: Option<Value>,
    autoscaling_limit_min_cu: Option<f64>,
    autoscaling_limit_max_cu: Option<f64>,
    provisioner: Option<String>,
    pooler_mode: Option<String>,
    disabled: Option<bool>,
    suspend_timeout_seconds: Option<i64>,
    name: Option<String>,
}

/// `POST /projects/{p}/endpoints`: a read-write compute for a branch that has none (201).
fn create_endpoint(app: &App, body: &Bytes) -> Res {
    let req: EndpointCreateRequest = decode_req(body)?;
    let e = req.endpoint;
    if e.kind != "read_write" && e.kind != "read_only" {
        return Err(bad(format!(
            "endpoint type `{}` is not read_write or read_only",
            e.kind
        )));
    }
    if e.kind == "read_only" {
        return Err(bad("the fake serves read_write endpoints only"));
    }
    let mut st = app.st();
    st.branch(&e.branch_id)
        .ok_or_else(|| no_branch(&e.branch_id))?;
    if !st.endpoint_ids(&e.branch_id).is_empty() {
        return Err(bad(format!(
            "branch {} already has a read_write endpoint",
            e.branch_id
        )));
    }
    let now = Utc::now();
    let ep = st.new_endpoint(&e.branch_id, now);
    let (ops, _) = st.add_ops(vec![op("start_compute", &e.branch_id, Some(&ep.id))]);
    let resp = json!({
        "endpoint": endpoint_json(&app.opts, &ep),
        "operations": st.ops_json(&app.opts, &ops)
    });
    st.endpoints.push(ep);
    app.relink(&st);
    drop(st);
    spawn_job(app, ops, async { Ok(()) });
    Ok(Reply::Json(201, resp))
}

fn set_default(app: &App, id: &str) -> Res {
    let mut st = app.st();
    let b = st.branch(id).ok_or_else(|| no_branch(id))?;
    if b.expires_at.is_some() {
        return Err(bad(format!(
            "branch {id} has an expiration time and cannot be the default branch"
        )));
    }
    let now = Utc::now();
    for b in &mut st.branches {
        if b.default != (b.id == id) {
            b.default = b.id == id;
            b.updated_at = now;
        }
    }
    let b = st.branch(id).ok_or_else(|| no_branch(id))?;
    ok(json!({"branch": branch_json(&app.opts, b), "operations": []}))
}

fn finalize_restore(app: &App, id: &str, body: &Bytes) -> Res {
    let req: FinalizeRestoreRequest = decode_opt(body)?.unwrap_or_default();
    let mut st = app.st();
    let b = st.branch(id).ok_or_else(|| no_branch(id))?;
    if b.restore_status != Some("restored") {
        return Err(bad(format!(
            "branch {id} is not a snapshot restore waiting to be finalized"
        )));
    }
    if b.data.is_none() {
        return Err(ApiError::new(
            409,
            "",
            format!("the restore of branch {id} is still in progress"),
        ));
    }
    let target = b
        .restore_target
        .clone()
        .filter(|t| st.branch(t).is_some())
        .ok_or_else(|| {
            bad(format!(
                "the branch that {id} should replace no longer exists"
            ))
        })?;
    if let Some(n) = &req.name {
        check_name(n)?;
        st.check_name_free(n, Some(&target))?;
    }
    let moved = st.endpoint_ids(&target);
    let mut specs: Vec<OpSpec> = moved
        .iter()
        .map(|e| op("suspend_compute", &target, Some(e)))
        .collect();
    specs.extend(moved.iter().map(|e| op("start_compute", id, Some(e))));
    let (ops, doomed) = st.add_ops(specs);
    if !doomed {
        st.finalize(id, &target, req.name).map_err(bad)?;
        app.relink(&st);
        st.finish(&ops, &Ok(()));
    }
    ok(json!({"operations": st.ops_json(&app.opts, &ops)}))
}

fn put_schedule(app: &App, id: &str, body: &Bytes) -> Res {
    let req: BackupSchedule = decode_req(body)?;
    for item in &req.schedule {
        if !["daily", "weekly", "monthly"].contains(&item.frequency.as_str()) {
            return Err(bad(format!(
                "unsupported backup frequency {:?}: use daily, weekly or monthly",
                item.frequency
            )));
        }
        if item.hour.is_some_and(|h| !(0..=23).contains(&h)) {
            return Err(bad("hour must be between 0 and 23"));
        }
        if item.day.is_some_and(|d| !(1..=31).contains(&d)) {
            return Err(bad("day must be between 1 and 31"));
        }
        if item.month.is_some_and(|m| !(1..=12).contains(&m)) {
            return Err(bad("month must be between 1 and 12"));
        }
        if item.retention_seconds.is_some_and(|r| r < 3600) {
            return Err(bad("retention_seconds must be at least 3600"));
        }
    }
    let mut st = app.st();
    let b = st.branch_mut(id).ok_or_else(|| no_branch(id))?;
    if b.parent_id.is_some() && !req.schedule.is_empty() {
        return Err(bad(format!(
            "backup schedules apply to root branches only; {id} is a child branch"
        )));
    }
    b.schedule = req
        .schedule
        .iter()
        .map(|i| serde_json::to_value(i).unwrap_or(Value::Null))
        .collect();
    b.updated_at = Utc::now();
    ok(json!({}))
}

fn connection_uri(app: &App, q: &str) -> Res {
    let q = query_map(
        q,
        &[
            "database_name",
            "role_name",
            "branch_id",
            "endpoint_id",
            "pooled",
        ],
    )?;
    let db = q
        .get("database_name")
        .ok_or_else(|| bad("database_name is required"))?;
    let role = q
        .get("role_name")
        .ok_or_else(|| bad("role_name is required"))?;
    if let Some(p) = q.get("pooled") {
        if p != "true" && p != "false" {
            return Err(bad(format!("invalid pooled {p:?}")));
        }
    }
    let st = app.st();
    let branch = match q.get("branch_id") {
        Some(b) => st.branch(b).ok_or_else(|| no_branch(b))?,
        None => st
            .default_branch()
            .ok_or_else(|| internal("no default branch"))?,
    };
    let ep = match q.get("endpoint_id") {
        Some(e) => {
            let ep = st
                .endpoints
                .iter()
                .find(|x| &x.id == e)
                .ok_or_else(|| not_found(format!("endpoint {e} not found")))?;
            if ep.branch_id != branch.id {
                return Err(bad(format!(
                    "endpoint {e} does not belong to branch {}",
                    branch.id
                )));
            }
            ep
        }
        None => st
            .endpoints
            .iter()
            .find(|x| x.branch_id == branch.id)
            .ok_or_else(|| not_found(format!("branch {} has no read_write endpoint", branch.id)))?,
    };
    if role != ROLE {
        return Err(not_found(format!(
            "role {role} not found on branch {}",
            branch.id
        )));
    }
    if db != DATABASE {
        return Err(not_found(format!(
            "database {db} not found on branch {}",
            branch.id
        )));
    }
    ok(json!({"uri": app.ep_uri(&ep.id, role, db)}))
}

fn list_operations(app: &App, q: &str) -> Res {
    let q = query_map(q, &["cursor", "limit"])?;
    let limit = match q.get("limit") {
        None => 10,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=1000).contains(&n) => n,
            _ => return Err(bad(format!("invalid limit {l:?}: expected 1 to 1000"))),
        },
    };
    let st = app.st();
    let newest_first: Vec<&Operation> = st.operations.iter().rev().collect();
    let start = match q.get("cursor").filter(|c| !c.is_empty()) {
        None => 0,
        Some(c) => newest_first
            .iter()
            .position(|o| &o.id == c)
            .map(|i| i + 1)
            .ok_or_else(|| bad(format!("invalid cursor {c:?}")))?,
    };
    let end = (start + limit).min(newest_first.len());
    let page = newest_first.get(start..end).unwrap_or_default();
    let cursor = page
        .last()
        .map(|o| o.id.clone())
        .or_else(|| q.get("cursor").cloned())
        .unwrap_or_default();
    let ops: Vec<Value> = page.iter().map(|o| op_json(&app.opts, o)).collect();
    ok(json!({"operations": ops, "pagination": {"cursor": cursor}}))
}

async fn compare_schema(app: &App, id: &str, q: &str) -> Res {
    let q = query_map(
        q,
        &[
            "base_branch_id",
            "db_name",
            "timestamp",
            "lsn",
            "base_timestamp",
            "base_lsn",
        ],
    )?;
    let db = q.get("db_name").ok_or_else(|| bad("db_name is required"))?;
    let (this, base_id, base) = {
        let st = app.st();
        let b = st.branch(id).ok_or_else(|| no_branch(id))?;
        let base_id = match q.get("base_branch_id") {
            Some(x) => x.clone(),
            None => b
                .parent_id
                .clone()
                .ok_or_else(|| bad(format!("branch {id} has no parent: give base_branch_id")))?,
        };
        let base = st.branch(&base_id).ok_or_else(|| no_branch(&base_id))?;
        let ready = |b: &Branch| {
            b.data
                .clone()
                .ok_or_else(|| ApiError::new(409, "", format!("branch {} is not ready", b.id)))
        };
        (ready(b)?, base_id.clone(), ready(base)?)
    };
    if db != DATABASE {
        return Err(not_found(format!("database {db} not found")));
    }
    let this_point = resolve_point(
        app,
        Some(&this),
        id,
        q.get("timestamp").map(String::as_str),
        q.get("lsn").map(String::as_str),
    )
    .await?;
    let base_point = resolve_point(
        app,
        Some(&base),
        &base_id,
        q.get("base_timestamp").map(String::as_str),
        q.get("base_lsn").map(String::as_str),
    )
    .await?;
    let before = dump_at(app, base, base_point, db).await.map_err(internal)?;
    let after = dump_at(app, this, this_point, db).await.map_err(internal)?;
    let diff = unified_diff(app, &before, &after, &base_id, id)
        .await
        .map_err(internal)?;
    ok(json!({"diff": diff}))
}

async fn create_snapshot(app: &App, id: &str, q: &str, body: &Bytes) -> Res {
    let q = query_map(q, &["timestamp", "lsn", "name", "expires_at"])?;
    let b: SnapshotCreate = decode_opt(body)?.unwrap_or_default();
    let pick = |k: &str, v: Option<String>| q.get(k).cloned().or(v);
    let timestamp = pick("timestamp", b.timestamp);
    let lsn = pick("lsn", b.lsn);
    let name = pick("name", b.name);
    let expires_at = pick("expires_at", b.expires_at);
    let now = Utc::now();
    if let Some(e) = &expires_at {
        if parse_time(e, "expires_at")? <= now {
            return Err(bad(format!("expires_at {e} must be in the future")));
        }
    }
    let (data, branch_name) = {
        let st = app.st();
        let b = st.branch(id).ok_or_else(|| no_branch(id))?;
        if let Some(p) = &b.parent_id {
            return Err(bad(format!(
                "snapshots can be taken of root branches only; {id} is a child of {p}"
            )));
        }
        let data = b
            .data
            .clone()
            .ok_or_else(|| ApiError::new(409, "", format!("branch {id} is not ready")))?;
        (data, b.name.clone())
    };
    let point = resolve_point(app, Some(&data), id, timestamp.as_deref(), lsn.as_deref()).await?;
    let (resp, snap_id, ops, doomed) = {
        let mut st = app.st();
        if st.branch(id).is_none() {
            return Err(no_branch(id));
        }
        let snap_id = st.word_id("snap");
        let snap = Snapshot {
            id: snap_id.clone(),
            name: name
                .unwrap_or_else(|| format!("{branch_name}-{}", now.format("%Y-%m-%d-%H%M%S"))),
            source_branch_id: id.to_owned(),
            lsn: point.as_ref().and_then(|p| p.lsn.clone()),
            timestamp: Some(
                point
                    .as_ref()
                    .and_then(|p| p.timestamp.clone())
                    .unwrap_or_else(|| ts(now)),
            ),
            created_at: now,
            expires_at: expires_at.clone(),
            manual: true,
            dir: None,
            full_size: None,
        };
        let (ops, doomed) = st.add_ops(vec![op("create_timeline", id, None)]);
        let resp =
            json!({"snapshot": snapshot_json(&snap), "operations": st.ops_json(&app.opts, &ops)});
        if !doomed {
            st.snapshots.push(snap);
        }
        (resp, snap_id, ops, doomed)
    };
    if !doomed {
        let a = app.clone();
        spawn_job(app, ops, async move {
            let dir = a.new_dir("snap");
            let r = capture(&a, data, point, &dir).await;
            let mut st = a.st();
            match (r, st.snapshots.iter_mut().find(|s| s.id == snap_id)) {
                (Ok(lsn), Some(s)) => {
                    s.lsn = s.lsn.take().or(Some(lsn));
                    s.full_size = Some(dir_size(&dir));
                    s.dir = Some(dir);
                    Ok(())
                }
                (Ok(_), None) => {
                    let _ = std::fs::remove_dir_all(&dir);
                    Ok(())
                }
                (Err(e), _) => {
                    st.snapshots.retain(|s| s.id != snap_id);
                    let _ = std::fs::remove_dir_all(&dir);
                    Err(e)
                }
            }
        });
    }
    ok(resp)
}

fn patch_snapshot(app: &App, id: &str, body: &Bytes) -> Res {
    let req: SnapshotUpdateRequest = decode_req(body)?;
    let u = req.snapshot;
    if let Some(Some(e)) = &u.expires_at {
        if parse_time(e, "expires_at")? <= Utc::now() {
            return Err(bad(format!("expires_at {e} must be in the future")));
        }
    }
    if u.name.as_deref().is_some_and(str::is_empty) {
        return Err(bad("a snapshot name cannot be empty"));
    }
    let mut st = app.st();
    let s = st
        .snapshots
        .iter_mut()
        .find(|s| s.id == id)
        .ok_or_else(|| not_found(format!("snapshot {id} not found")))?;
    if let Some(n) = u.name {
        s.name = n;
    }
    if let Some(e) = u.expires_at {
        s.expires_at = e;
    }
    ok(json!({"snapshot": snapshot_json(s)}))
}

fn delete_snapshot(app: &App, id: &str) -> Res {
    let mut st = app.st();
    let Some(i) = st.snapshots.iter().position(|s| s.id == id) else {
        return if st.deleted_snapshots.contains(id) {
            Ok(Reply::NoContent)
        } else {
            Err(not_found(format!("snapshot {id} not found")))
        };
    };
    let source = st.snapshots[i].source_branch_id.clone();
    let (ops, doomed) = st.add_ops(vec![op("delete_timeline", &source, None)]);
    if !doomed {
        let s = st.snapshots.remove(i);
        st.deleted_snapshots.insert(id.to_owned());
        if let Some(d) = s.dir {
            let _ = std::fs::remove_dir_all(d);
        }
        st.finish(&ops, &Ok(()));
    }
    Ok(Reply::Json(
        202,
        json!({"operations": st.ops_json(&app.opts, &ops)}),
    ))
}

fn restore_snapshot(app: &App, snap_id: &str, q: &str, body: &Bytes) -> Res {
    let q = query_map(q, &["name"])?;
    let req: SnapshotRestoreRequest = decode_opt(body)?.unwrap_or_default();
    let finalize = req.finalize_restore.unwrap_or(false);
    let name = req.name.or_else(|| q.get("name").cloned());
    if let Some(n) = &name {
        check_name(n)?;
    }
    let now = Utc::now();
    let mut st = app.st();
    let snap = st
        .snapshots
        .iter()
        .find(|s| s.id == snap_id)
        .ok_or_else(|| not_found(format!("snapshot {snap_id} not found")))?;
    let snap_name = snap.name.clone();
    let target = match &req.target_branch_id {
        Some(t) => Some(st.branch(t).ok_or_else(|| no_branch(t))?.id.clone()),
        None => st.branch(&snap.source_branch_id).map(|b| b.id.clone()),
    };
    if finalize && target.is_none() {
        return Err(bad(
            "finalize_restore needs a target branch, and the snapshot's source branch is gone",
        ));
    }
    st.check_limit(app.opts.branches_limit, 1)?;
    let name = match name {
        Some(n) => {
            st.check_name_free(&n, None)?;
            n
        }
        None => st.free_name(&format!("{snap_name} (restored)")),
    };
    let id = st.word_id("br");
    let mut b = Branch::new(&id, &name, None, now);
    b.restore_status = Some("restored");
    b.restored_from = Some(snap_id.to_owned());
    b.restore_target = target.clone();
    b.set_state("init", Some("ready"));
    let mut specs = vec![op("create_branch", &id, None)];
    let mut endpoint = None;
    match (&target, finalize) {
        (Some(t), true) => {
            let moved = st.endpoint_ids(t);
            specs.extend(moved.iter().map(|e| op("suspend_compute", t, Some(e))));
            specs.extend(moved.iter().map(|e| op("start_compute", &id, Some(e))));
        }
        _ if app.opts.snapshot_restore_endpoint => {
            let ep = st.new_endpoint(&id, now);
            specs.push(op("start_compute", &id, Some(&ep.id)));
            endpoint = Some(ep);
        }
        _ => {}
    }
    let (ops, doomed) = st.add_ops(specs);
    if doomed {
        b.pending_state = None;
    }
    let resp = json!({
        "branch": branch_json(&app.opts, &b),
        "endpoints": endpoint.iter().map(|e| endpoint_json(&app.opts, e)).collect::<Vec<_>>(),
        "operations": st.ops_json(&app.opts, &ops)
    });
    st.branches.push(b);
    st.endpoints.extend(endpoint);
    app.relink(&st);
    drop(st);
    if !doomed {
        let a = app.clone();
        let snap_id = snap_id.to_owned();
        spawn_job(app, ops, async move {
            let r: Result<(), String> = async {
                let sid = snap_id.clone();
                let dir = wait_for(&a, "the snapshot's data", move |st| {
                    match st.snapshots.iter().find(|s| s.id == sid) {
                        None => Some(Err(format!("snapshot {sid} was deleted"))),
                        Some(s) => s.dir.clone().map(Ok),
                    }
                })
                .await?;
                let (data, _) = make_data(&a, Source::Backup(dir)).await?;
                let leftover = {
                    let mut st = a.st();
                    let leftover = st.install(&id, data, None);
                    if let (Some(t), true, None) = (&target, finalize, &leftover) {
                        st.finalize(&id, t, None)?;
                    }
                    a.relink(&st);
                    leftover
                };
                discard(leftover).await;
                Ok(())
            }
            .await;
            if r.is_err() {
                if let Some(b) = a.st().branch_mut(&id) {
                    b.pending_state = None;
                }
            }
            r
        });
    }
    ok(resp)
}

// ---------------------------------------------------------------------------------------
// background work and PostgreSQL

/// Runs `work` on the fake's runtime; its result ends the operations `ops`.
fn spawn_job<F>(app: &App, ops: Vec<String>, work: F)
where
    F: Future<Output = Result<(), String>> + Send + 'static,
{
    let a = app.clone();
    app.work.spawn(async move {
        let r = work.await;
        a.st().finish(&ops, &r);
    });
}

/// Polls `check` until it gives an answer (5 minutes at most).
async fn wait_for<T>(
    app: &App,
    what: &str,
    mut check: impl FnMut(&State) -> Option<Result<T, String>>,
) -> Result<T, String> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let answer = {
            let st = app.st();
            check(&st)
        };
        if let Some(r) = answer {
            return r;
        }
        if Instant::now() > deadline {
            return Err(format!("timed out waiting for {what}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The instance of a branch, once it is ready.
async fn wait_data(app: &App, id: &str) -> Result<Data, String> {
    let id = id.to_owned();
    wait_for(app, "the parent branch", move |st| match st.branch(&id) {
        None => Some(Err(format!("branch {id} was deleted"))),
        Some(b) if b.current_state == "ready" && b.pending_state.is_none() => {
            b.data.clone().map(Ok)
        }
        Some(b) if b.pending_state.is_none() => Some(Err(format!(
            "branch {id} never became ready (current_state {})",
            b.current_state
        ))),
        Some(_) => None,
    })
    .await
}

/// Stops and removes an instance nobody uses any more.
async fn discard(data: Option<Data>) {
    if let Some(d) = data {
        let _ = d.handle.stop_and_remove().await;
    }
}

/// What a new instance is made from.
enum Source {
    /// A fresh base backup of a running instance.
    Head(Data),
    /// A point-in-time restore of an instance's history to a target.
    Pitr(Data, String),
    /// A base backup on disk (a snapshot).
    Backup(PathBuf),
}

/// A new running instance (and the LSN it was restored to).
async fn make_data(app: &App, source: Source) -> Result<(Data, String), String> {
    let root = app.new_dir("c");
    match source {
        Source::Head(from) => {
            let tmp = app.new_dir("tmp");
            let r = async {
                basebackup(&app.bin, &from, &tmp).await?;
                restore(app, &tmp, &app.empty_archive, "latest", &root).await
            }
            .await;
            let _ = std::fs::remove_dir_all(&tmp);
            r
        }
        Source::Pitr(from, target) => {
            let hist = from
                .history
                .clone()
                .ok_or_else(|| "the source has no point-in-time history".to_owned())?;
            ensure_archived(&app.bin, &from).await?;
            restore(app, &hist.base, &hist.archive, &target, &root).await
        }
        Source::Backup(dir) => restore(app, &dir, &app.empty_archive, "latest", &root).await,
    }
}

/// `restore_into`, then the instance allows replication connections from its own socket (so
/// that it can be backed up in turn).
async fn restore(
    app: &App,
    backup: &Path,
    archive: &Path,
    target: &str,
    root: &Path,
) -> Result<(Data, String), String> {
    let slot: Arc<Mutex<Option<ClusterHandle>>> = Arc::new(Mutex::new(None));
    let (reg, s) = (app.clone(), slot.clone());
    let restored = restore_into(
        backup,
        archive,
        target,
        root,
        Lifetime::Throwaway,
        &|_, _| drillbook::progress::Progress::hidden(),
        move |h| {
            reg.st().clusters.push(h.clone());
            *s.lock().unwrap_or_else(PoisonError::into_inner) = Some(h);
        },
    )
    .await;
    let restored = match restored {
        Ok(r) => r,
        Err(e) => {
            let h = slot.lock().unwrap_or_else(PoisonError::into_inner).take();
            if let Some(h) = h {
                let _ = h.stop_and_remove().await;
            }
            return Err(e.message);
        }
    };
    let port = restored.cluster.port;
    let socket = restored.cluster.socket_dir();
    let handle = restored.cluster.detach();
    let data = Data {
        handle,
        socket,
        port,
        history: None,
    };
    let hba = root.join("pg_hba.conf");
    let r = async {
        let mut text = std::fs::read_to_string(&hba).map_err(|e| e.to_string())?;
        text.push_str("local replication all trust\n");
        std::fs::write(&hba, text).map_err(|e| e.to_string())?;
        let out = psql_async(
            &app.bin,
            &data,
            "postgres",
            &["SELECT pg_reload_conf()", "SELECT pg_last_wal_replay_lsn()"],
        )
        .await?;
        Ok::<_, String>(out.lines().last().unwrap_or("").trim().to_owned())
    }
    .await;
    match r {
        Ok(lsn) => Ok((data, lsn)),
        Err(e) => {
            discard(Some(data)).await;
            Err(e)
        }
    }
}

/// The main instance, its role and database, and its history's base backup.
async fn init_main(app: &App) -> Result<Data, String> {
    let root = app.new_dir("c");
    let archive = app.root.join("main-archive");
    let mut init = InitOptions {
        archive_dir: Some(archive.clone()),
        private: true,
        unsafe_fast: false,
        settings: vec![
            ("fsync".into(), "off".into()),
            ("shared_buffers".into(), "16MB".into()),
        ],
        superuser: None,
    };
    if app.opts.logical_replication {
        init.settings.push(("wal_level".into(), "logical".into()));
    }
    let handle = ClusterHandle::for_root(&app.bin, &root).map_err(|e| e.to_string())?;
    app.st().clusters.push(handle);
    let mut cluster = Cluster::create(app.bin.clone(), &root, &init)
        .await
        .map_err(|e| e.to_string())?;
    cluster.start().await.map_err(|e| e.to_string())?;
    let live = Data {
        handle: cluster.handle(),
        socket: cluster.socket_dir(),
        port: cluster.port,
        history: None,
    };
    psql_async(
        &app.bin,
        &live,
        "postgres",
        &[
            &format!("CREATE ROLE {ROLE} LOGIN SUPERUSER PASSWORD '{PASSWORD}'"),
            &format!("CREATE DATABASE {DATABASE} OWNER {ROLE}"),
        ],
    )
    .await?;
    let base = app.root.join("main-base");
    basebackup(&app.bin, &live, &base).await?;
    let began = Utc::now();
    let lsn = current_lsn(&app.bin, &live).await?;
    let began_lsn = parse_lsn(&lsn).ok_or_else(|| format!("bad LSN {lsn}"))?;
    let _ = cluster.detach();
    Ok(Data {
        history: Some(History {
            base,
            archive,
            began,
            began_lsn,
        }),
        ..live
    })
}

/// Makes sure the WAL up to now is archived: a commit stamped now (recovery to a time after
/// the last commit would otherwise never reach its target), a segment switch, then a wait
/// until the archiver has the switched segment.
async fn ensure_archived(bin: &Binaries, d: &Data) -> Result<(), String> {
    let out = psql_async(
        bin,
        d,
        "postgres",
        &[
            "SELECT pg_current_xact_id()",
            "SELECT pg_walfile_name(pg_switch_wal())",
        ],
    )
    .await?;
    let segment = out.lines().last().unwrap_or("").trim().to_owned();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let last = psql_async(
            bin,
            d,
            "postgres",
            &["SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver"],
        )
        .await?;
        let last = last.trim();
        if last.len() >= 24 && last[..24] >= *segment.as_str() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "WAL segment {segment} was not archived within 60 s (last archived: {last:?})"
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A snapshot's data: a base backup of the head, or of a temporary point-in-time instance.
async fn capture(
    app: &App,
    data: Data,
    point: Option<Point>,
    dir: &Path,
) -> Result<String, String> {
    match point {
        None => {
            let lsn = current_lsn(&app.bin, &data).await?;
            basebackup(&app.bin, &data, dir).await?;
            Ok(lsn)
        }
        Some(p) => {
            let (tmp, lsn) = make_data(app, Source::Pitr(data, p.target)).await?;
            let r = basebackup(&app.bin, &tmp, dir).await;
            discard(Some(tmp)).await;
            r.map(|()| lsn)
        }
    }
}

/// The schema of a branch's database, at its head or at a point.
async fn dump_at(app: &App, data: Data, point: Option<Point>, db: &str) -> Result<String, String> {
    match point {
        None => dump_schema(&app.bin, &data, db).await,
        Some(p) => {
            let (tmp, _) = make_data(app, Source::Pitr(data, p.target)).await?;
            let r = dump_schema(&app.bin, &tmp, db).await;
            discard(Some(tmp)).await;
            r
        }
    }
}

async fn unified_diff(app: &App, a: &str, b: &str, la: &str, lb: &str) -> Result<String, String> {
    let dir = app.new_dir("tmp");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let (fa, fb) = (dir.join("a.sql"), dir.join("b.sql"));
    let written = std::fs::write(&fa, a).and_then(|()| std::fs::write(&fb, b));
    let out = match written {
        Ok(()) => tokio::process::Command::new("diff")
            .args(["-u", "--label", la, "--label", lb])
            .arg(&fa)
            .arg(&fb)
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|e| format!("cannot run diff: {e}")),
        Err(e) => Err(e.to_string()),
    };
    let _ = std::fs::remove_dir_all(&dir);
    let out = out?;
    match out.status.code() {
        Some(0) => Ok(String::new()),
        Some(1) => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
        _ => Err(format!(
            "diff failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
    }
}

fn psql_args(d: &Data, db: &str) -> Vec<String> {
    [
        "-h",
        &d.socket.display().to_string(),
        "-p",
        &d.port.to_string(),
        "-U",
        "postgres",
        "-d",
        db,
        "-X",
        "-q",
        "-t",
        "-A",
        "-v",
        "ON_ERROR_STOP=1",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

/// Runs each of `commands` (its own transaction) through psql; the combined output.
async fn psql_async(
    bin: &Binaries,
    d: &Data,
    db: &str,
    commands: &[&str],
) -> Result<String, String> {
    let mut cmd = tokio::process::Command::new(bin.dir.join("psql"));
    cmd.args(psql_args(d, db));
    for c in commands {
        cmd.args(["-c", c]);
    }
    let out = cmd
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("cannot run psql: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "psql: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

async fn current_lsn(bin: &Binaries, d: &Data) -> Result<String, String> {
    psql_async(bin, d, "postgres", &["SELECT pg_current_wal_lsn()"])
        .await
        .map(|s| s.trim().to_owned())
}

/// `pg_basebackup -Fp -X stream -c fast` of an instance into `dir` (new).
async fn basebackup(bin: &Binaries, d: &Data, dir: &Path) -> Result<(), String> {
    let out = tokio::process::Command::new(bin.dir.join("pg_basebackup"))
        .args([
            "-h",
            &d.socket.display().to_string(),
            "-p",
            &d.port.to_string(),
            "-U",
            "postgres",
            "-D",
        ])
        .arg(dir)
        .args(["-Fp", "-X", "stream", "-c", "fast", "--no-password"])
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("cannot run pg_basebackup: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "pg_basebackup: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

/// `pg_dump --schema-only`, without the per-run `\restrict` lines of recent versions.
async fn dump_schema(bin: &Binaries, d: &Data, db: &str) -> Result<String, String> {
    let out = tokio::process::Command::new(bin.dir.join("pg_dump"))
        .args([
            "-h",
            &d.socket.display().to_string(),
            "-p",
            &d.port.to_string(),
            "-U",
            "postgres",
            "--schema-only",
            "--no-password",
            "-d",
            db,
        ])
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("cannot run pg_dump: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "pg_dump: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .lines()
        .filter(|l| !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict"))
        .map(|l| format!("{l}\n"))
        .collect())
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}

// ---------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    /// A blocking client for the fake's API.
    struct Client {
        rt: tokio::runtime::Runtime,
        http: reqwest::Client,
        base: String,
        key: String,
        project: String,
    }

    impl Client {
        fn new(fake: &FakeNeon) -> Client {
            let _ = rustls::crypto::ring::default_provider().install_default();
            Client {
                rt: tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime"),
                http: reqwest::Client::builder().build().expect("HTTP client"),
                base: fake.api_url(),
                key: fake.key().to_owned(),
                project: fake.project_id().to_owned(),
            }
        }

        /// `path` is relative to `/projects/{p}` when it does not start with `/`.
        fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
            self.call_as(Some(&self.key), method, path, body)
        }

        fn call_as(
            &self,
            key: Option<&str>,
            method: &str,
            path: &str,
            body: Option<Value>,
        ) -> (u16, Value) {
            let url = if path.starts_with('/') {
                format!("{}{path}", self.base)
            } else {
                format!("{}/projects/{}/{path}", self.base, self.project)
            };
            self.rt.block_on(async {
                let m = Method::from_bytes(method.as_bytes()).expect("method");
                let mut rq = self.http.request(m, url.trim_end_matches('/'));
                if let Some(k) = key {
                    rq = rq.bearer_auth(k);
                }
                if let Some(b) = body {
                    rq = rq.json(&b);
                }
                let resp = rq.send().await.expect("request");
                let status = resp.status().as_u16();
                let text = resp.text().await.expect("body");
                let v = if text.is_empty() {
                    Value::Null
                } else {
                    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
                };
                (status, v)
            })
        }

        /// Waits until every operation of a response finished; panics if one did not.
        fn wait_ops(&self, resp: &Value) {
            let deadline = Instant::now() + Duration::from_secs(180);
            for o in resp["operations"].as_array().expect("operations") {
                let id = o["id"].as_str().expect("operation id");
                loop {
                    let (s, v) = self.call("GET", &format!("operations/{id}"), None);
                    assert_eq!(s, 200, "{v}");
                    match v["operation"]["status"].as_str() {
                        Some("finished") => break,
                        Some("running" | "scheduling") => {}
                        _ => panic!("operation ended badly: {v}"),
                    }
                    assert!(Instant::now() < deadline, "operation {id} still running");
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }

        /// The final status of one operation.
        fn op_end(&self, id: &str) -> Value {
            loop {
                let (_, v) = self.call("GET", &format!("operations/{id}"), None);
                if v["operation"]["status"] != "running" {
                    return v["operation"].clone();
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    fn psql_uri(uri: &str, sql: &str) -> String {
        let bin = find_binaries().expect("PostgreSQL");
        let out = Command::new(bin.dir.join("psql"))
            .args([
                uri,
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
            .expect("psql");
        assert!(
            out.status.success(),
            "psql {uri}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn branch_named(fake: &FakeNeon, name: &str) -> Value {
        fake.branches()
            .into_iter()
            .find(|b| b["name"] == name)
            .unwrap_or_else(|| panic!("no branch {name}: {:#?}", fake.branches()))
    }

    #[test]
    fn fake_neon_auth_errors_and_faults() {
        let fake = FakeNeon::start(Options::default());
        let c = Client::new(&fake);
        let (s, v) = c.call_as(None, "GET", "", None);
        assert_eq!(s, 401, "{v}");
        assert_eq!(v["message"], "authorization failed");
        assert_eq!(v["code"], "");
        assert!(v["request_id"].is_string());
        assert_eq!(c.call_as(Some("wrong"), "GET", "", None).0, 401);

        let (s, v) = c.call("GET", "", None);
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["project"]["id"], "shiny-wind-028834");
        assert_eq!(v["project"]["history_retention_seconds"], 604_800);
        assert_eq!(v["project"]["owner"]["branches_limit"], 10);

        let (s, v) = c.call("GET", "branches", None);
        assert_eq!(s, 200, "{v}");
        let main = &v["branches"][0];
        assert_eq!(main["id"], MAIN_ID);
        assert_eq!(main["default"], true);
        assert_eq!(main["current_state"], "ready");
        assert!(main.get("parent_id").is_none());

        // request bodies are checked against the spec
        let (s, v) = c.call("POST", "branches", Some(json!({"branch": {"nmae": "x"}})));
        assert_eq!(s, 400, "{v}");
        assert!(
            v["message"].as_str().expect("message").contains("nmae"),
            "{v}"
        );
        let (s, v) = c.call("GET", "branches?colour=blue", None);
        assert_eq!(s, 400, "{v}");
        let (s, v) = c.call("GET", "nothing/here", None);
        assert_eq!(s, 404, "{v}");
        let (s, v) = c.call(
            "PATCH",
            "",
            Some(json!({"project": {"history_retention_seconds": 2_592_001}})),
        );
        assert_eq!(s, 400, "{v}");

        // a fault that is not applied, then one applied behind a lost response
        fake.inject(Fault {
            method: "GET",
            path_contains: "/branches".into(),
            status: 503,
            times: 1,
            retry_after: Some("1".into()),
            apply: false,
        });
        assert_eq!(c.call("GET", "branches", None).0, 503);
        assert_eq!(c.call("GET", "branches", None).0, 200);
        fake.inject(Fault {
            method: "PATCH",
            path_contains: format!("/projects/{}", fake.project_id()),
            status: 500,
            times: 1,
            retry_after: None,
            apply: true,
        });
        let (s, _) = c.call(
            "PATCH",
            "",
            Some(json!({"project": {"history_retention_seconds": 86_400}})),
        );
        assert_eq!(s, 500);
        fake.wait_idle();
        let (_, v) = c.call("GET", "", None);
        assert_eq!(v["project"]["history_retention_seconds"], 86_400, "applied");

        let reqs = fake.requests();
        assert!(!reqs[0].authorized && reqs[2].authorized);
        assert_eq!((reqs[0].status, reqs[2].status), (401, 200));
        assert_eq!(reqs[0].path, format!("/projects/{}", fake.project_id()));
    }

    #[test]
    fn fake_neon_branch_at_a_timestamp_holds_the_rows_committed_before_it() {
        let fake = FakeNeon::start(Options::default());
        let c = Client::new(&fake);
        fake.psql("main", "CREATE TABLE t (x int); INSERT INTO t VALUES (1)");
        std::thread::sleep(Duration::from_millis(300));
        let at = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
        std::thread::sleep(Duration::from_millis(300));
        fake.psql("main", "INSERT INTO t VALUES (2)");

        let (s, v) = c.call(
            "POST",
            "branches",
            Some(json!({"branch": {"name": "pitr", "parent_timestamp": at}, "endpoints": [{"type": "read_write"}]})),
        );
        assert_eq!(s, 201, "{v}");
        assert_eq!(v["branch"]["current_state"], "init");
        assert_eq!(v["branch"]["pending_state"], "ready");
        let actions: Vec<&str> = v["operations"]
            .as_array()
            .expect("operations")
            .iter()
            .map(|o| o["action"].as_str().expect("action"))
            .collect();
        assert_eq!(actions, ["create_branch", "start_compute"]);
        assert!(v["operations"]
            .as_array()
            .expect("ops")
            .iter()
            .all(|o| o["status"] == "running"));
        let uri = v["connection_uris"][0]["connection_uri"]
            .as_str()
            .expect("uri")
            .to_owned();
        let id = v["branch"]["id"].as_str().expect("id").to_owned();
        c.wait_ops(&v);

        let (_, b) = c.call("GET", &format!("branches/{id}"), None);
        assert_eq!(b["branch"]["current_state"], "ready", "{b}");
        assert_eq!(b["branch"]["parent_id"], MAIN_ID);
        assert_eq!(
            fake.psql("pitr", "SELECT string_agg(x::text, ',' ORDER BY x) FROM t"),
            "1"
        );
        // the connection string reaches the same data, as neondb_owner
        assert_eq!(
            psql_uri(&uri, "SELECT current_user || ':' || count(*) FROM t"),
            "neondb_owner:1"
        );
        let (s, u) = c.call(
            "GET",
            &format!("connection_uri?branch_id={id}&database_name=neondb&role_name=neondb_owner"),
            None,
        );
        assert_eq!(s, 200, "{u}");
        assert_eq!(u["uri"], uri.as_str());

        // at the head: both rows
        let (s, v) = c.call(
            "POST",
            "branches",
            Some(json!({"branch": {"name": "head"}})),
        );
        assert_eq!(s, 201, "{v}");
        c.wait_ops(&v);
        assert_eq!(
            fake.psql("head", "SELECT string_agg(x::text, ',' ORDER BY x) FROM t"),
            "1,2"
        );

        // pagination: branches by `next`, operations by `cursor`
        let (s, p1) = c.call("GET", "branches?limit=2&sort_by=name&sort_order=asc", None);
        assert_eq!(s, 200, "{p1}");
        assert_eq!(p1["branches"][0]["name"], "head");
        assert_eq!(p1["branches"].as_array().map(Vec::len), Some(2));
        let next = p1["pagination"]["next"].as_str().expect("next").to_owned();
        let (_, p2) = c.call(
            "GET",
            &format!("branches?limit=2&sort_by=name&sort_order=asc&cursor={next}"),
            None,
        );
        assert_eq!(p2["branches"][0]["name"], "pitr", "{p2}");
        assert!(p2["pagination"].get("next").is_none(), "{p2}");
        let (_, o1) = c.call("GET", "operations?limit=2", None);
        let cursor = o1["pagination"]["cursor"]
            .as_str()
            .expect("cursor")
            .to_owned();
        let (_, o2) = c.call("GET", &format!("operations?limit=2&cursor={cursor}"), None);
        assert_eq!(o1["operations"].as_array().map(Vec::len), Some(2));
        assert_eq!(o2["operations"].as_array().map(Vec::len), Some(1), "{o2}");

        // outside the window, before the history, in the future, on a branch without history
        let when = |t: DateTime<Utc>| json!({"branch": {"parent_timestamp": ts(t)}});
        for (body, expect) in [
            (
                when(Utc::now() - TimeDelta::days(8)),
                "outside the restore window",
            ),
            (
                when(Utc::now() - TimeDelta::hours(1)),
                "before the fake project's history began",
            ),
            (when(Utc::now() + TimeDelta::hours(1)), "in the future"),
            (
                json!({"branch": {"parent_timestamp": at, "parent_id": id}}),
                "no point-in-time history",
            ),
            (
                json!({"branch": {"parent_timestamp": at, "parent_lsn": "0/1"}}),
                "mutually exclusive",
            ),
        ] {
            let (s, v) = c.call("POST", "branches", Some(body));
            assert_eq!(s, 400, "{v}");
            assert!(
                v["message"].as_str().expect("message").contains(expect),
                "{v}"
            );
        }
    }

    #[test]
    fn fake_neon_locks_while_operations_run_and_deletes_idempotently() {
        let fake = FakeNeon::start(Options {
            operation_ms: 1500,
            ..Options::default()
        });
        let c = Client::new(&fake);
        let (s, v) = c.call(
            "POST",
            "branches",
            Some(json!({"branch": {"name": "child"}})),
        );
        assert_eq!(s, 201, "{v}");
        let id = v["branch"]["id"].as_str().expect("id").to_owned();
        let (s, l) = c.call(
            "POST",
            "branches",
            Some(json!({"branch": {"name": "other"}})),
        );
        assert_eq!(s, 423, "{l}");
        assert_eq!(l["message"], LOCKED);
        assert_eq!(
            c.call("GET", "branches", None).0,
            200,
            "reads are not locked"
        );
        c.wait_ops(&v);

        let (s, d) = c.call("DELETE", &format!("branches/{id}"), None);
        assert_eq!(s, 200, "{d}");
        assert_eq!(d["operations"][0]["action"], "delete_timeline");
        assert_eq!(c.call("DELETE", &format!("branches/{id}"), None).0, 423);
        c.wait_ops(&d);
        let (s, v) = c.call("DELETE", &format!("branches/{id}"), None);
        assert_eq!(s, 204, "{v}");
        assert_eq!(v, Value::Null);
        assert_eq!(c.call("GET", &format!("branches/{id}"), None).0, 404);
        assert_eq!(
            c.call("DELETE", "branches/br-none-none-00000000", None).0,
            404
        );
        assert_eq!(
            c.call("DELETE", &format!("branches/{MAIN_ID}"), None).0,
            400
        );
        assert_eq!(fake.branches().len(), 1);

        fake.fail_next_operation("create_branch");
        let (s, v) = c.call(
            "POST",
            "branches",
            Some(json!({"branch": {"name": "doomed"}})),
        );
        assert_eq!(s, 201, "{v}");
        let end = c.op_end(v["operations"][0]["id"].as_str().expect("id"));
        assert_eq!(end["status"], "failed", "{end}");
        assert!(end["error"].is_string());
        assert_eq!(branch_named(&fake, "doomed")["current_state"], "init");
    }

    #[test]
    fn fake_neon_restores_and_snapshots() {
        let fake = FakeNeon::start(Options::default());
        let c = Client::new(&fake);
        let rows = "SELECT string_agg(x::text, ',' ORDER BY x) FROM t";
        fake.psql("main", "CREATE TABLE t (x int); INSERT INTO t VALUES (1)");
        std::thread::sleep(Duration::from_millis(300));
        let at = Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true);
        std::thread::sleep(Duration::from_millis(300));
        fake.psql("main", "INSERT INTO t VALUES (2)");

        // onto itself: needs a point and a name for the old state
        let restore = format!("branches/{MAIN_ID}/restore");
        let (s, v) = c.call("POST", &restore, Some(json!({"source_branch_id": MAIN_ID})));
        assert_eq!(s, 400, "{v}");
        let (s, v) = c.call(
            "POST",
            &restore,
            Some(json!({"source_branch_id": MAIN_ID, "source_timestamp": at})),
        );
        assert_eq!(s, 400, "{v}");
        let (s, v) = c.call(
            "POST",
            &restore,
            Some(json!({"source_branch_id": MAIN_ID, "source_timestamp": at, "preserve_under_name": "main_before"})),
        );
        assert_eq!(s, 200, "{v}");
        c.wait_ops(&v);
        assert_eq!(fake.psql("main", rows), "1");
        assert_eq!(fake.psql("main_before", rows), "1,2");
        assert_eq!(psql_uri(&fake.main_uri(), "SELECT count(*) FROM t"), "1");
        let main = branch_named(&fake, "main");
        assert_eq!(main["id"], MAIN_ID);
        assert!(main["last_reset_at"].is_string());
        assert!(branch_named(&fake, "main_before")
            .get("parent_id")
            .is_none());

        // a snapshot of the head, restored onto main in one step
        let (s, v) = c.call(
            "POST",
            &format!("branches/{MAIN_ID}/snapshot?name=snap1"),
            None,
        );
        assert_eq!(s, 200, "{v}");
        let snap = v["snapshot"]["id"].as_str().expect("id").to_owned();
        assert_eq!(v["snapshot"]["manual"], true);
        c.wait_ops(&v);
        fake.psql("main", "INSERT INTO t VALUES (3)");
        let (s, v) = c.call(
            "POST",
            &format!("/projects/{}/snapshots/{snap}/restore", fake.project_id()),
            Some(json!({"target_branch_id": MAIN_ID, "finalize_restore": true})),
        );
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["branch"]["restore_status"], "restored");
        c.wait_ops(&v);
        let main = branch_named(&fake, "main");
        assert_ne!(main["id"], MAIN_ID);
        assert_eq!(main["default"], true);
        assert_eq!(main["restored_as"], MAIN_ID);
        assert_eq!(main["restored_from"], snap.as_str());
        assert_eq!(main["restore_status"], "finalized");
        assert_eq!(branch_named(&fake, "main (old)")["id"], MAIN_ID);
        assert_eq!(fake.psql("main", rows), "1");
        assert_eq!(fake.psql("main (old)", rows), "1,3");
        assert_eq!(
            psql_uri(&fake.main_uri(), "SELECT count(*) FROM t"),
            "1",
            "the endpoint moved"
        );

        // schema comparison
        fake.psql("main (old)", "CREATE TABLE extra (y int)");
        let new_main = main["id"].as_str().expect("id");
        let (s, v) = c.call(
            "GET",
            &format!("branches/{new_main}/compare_schema?base_branch_id={MAIN_ID}&db_name=neondb"),
            None,
        );
        assert_eq!(s, 200, "{v}");
        assert!(
            v["diff"]
                .as_str()
                .expect("diff")
                .contains("-CREATE TABLE public.extra"),
            "{v}"
        );

        // backup schedules
        let sched = format!("branches/{new_main}/backup_schedule");
        for bad in [
            json!({"schedule": [{"frequency": "hourly"}]}),
            json!({"schedule": [{"frequency": "daily", "retention_seconds": 60}]}),
            json!({"schedule": [{"frequency": "daily", "minute": 5}]}),
        ] {
            assert_eq!(c.call("PUT", &sched, Some(bad)).0, 400);
        }
        let good =
            json!({"schedule": [{"frequency": "daily", "hour": 23, "retention_seconds": 604_800}]});
        let (s, v) = c.call("PUT", &sched, Some(good.clone()));
        assert_eq!((s, v), (200, json!({})));
        assert_eq!(c.call("GET", &sched, None).1, good);
    }
}
