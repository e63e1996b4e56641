//! `cargo bench --bench restore`: point-in-time restore time of drillbook's `local.restore`
//! next to the same restore done by hand (copy the base backup, `restore_command = 'cp …'`,
//! `recovery_target_time`, start, wait for promotion) and with pgBackRest
//! (`pgbackrest restore --type=time`, then start and wait), on the same cluster, WAL and
//! target. The cluster archives every segment both to a plain directory and to a pgBackRest
//! repository. drillbook's `pgbackrest.restore` runs against the same repository, beside
//! pgBackRest by hand, and its overhead over the hand-made restore is printed (goal: under
//! 5%). Times run from "start restoring" to "promoted and accepting writes"; the whole
//! `drillbook run` process of the same `local.restore` (start, the step, the undo that stops
//! and removes the instance, the record and the drill log) is timed separately. 5 rounds
//! (`DRILLBOOK_BENCH_ROUNDS`) with the order rotated, median and best; every ratio is to the
//! restore by hand (the goal for `local.restore`: at most 0.8). Needs the PostgreSQL server
//! binaries and `pgbackrest`, which it installs from the distribution (`apt-get`, as root or
//! through `sudo -n`) when they are missing.
//! `DRILLBOOK_BENCH_SCALE` (pgbench scale, default 30) and `DRILLBOOK_BENCH_SECONDS`
//! (workload after the backup, default 60: about 800 MB of WAL here) change the size.

mod common;

use common::{env_num, median, Quiet, RemoveOnDrop};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use drillbook::cancel::Cancel;
use drillbook::engine::RunOptions;
use drillbook::pg::cluster::{Binaries, Cluster, InitOptions};
use drillbook::record::Verdict;

/// The server's account (the owner of the cluster directory): pgBackRest and pg_ctl run as it.
fn owner(path: &Path) -> (u32, u32) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).expect("metadata");
    (m.uid(), m.gid())
}

fn run_as(who: (u32, u32), program: &Path, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .uid(who.0)
        .gid(who.1)
        .stdin(Stdio::null())
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{} {args:?}: {}{}",
        program.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Runs SQL through psql as `postgres` on 127.0.0.1:`port`; the unaligned output, or
/// psql's message.
fn try_psql(bin: &Binaries, port: u16, db: &str, sql: &str) -> Result<String, String> {
    let out = Command::new(bin.dir.join("psql"))
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "postgres",
            "-d",
            db,
            "-X",
            "-q",
            "-t",
            "-A",
            "-c",
            sql,
        ])
        .output()
        .expect("psql");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn psql(bin: &Binaries, port: u16, sql: &str) -> String {
    try_psql(bin, port, "bench", sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Starts a restored data directory on `port` and waits until it is promoted.
fn start_and_wait(bin: &Binaries, who: (u32, u32), data: &Path, port: u16) {
    let log = data.join("../restore.log");
    let ok = Command::new(bin.dir.join("pg_ctl"))
        .args([
            "start",
            "-w",
            "-t",
            "600",
            "-D",
            &data.to_string_lossy(),
            "-l",
            &log.to_string_lossy(),
            "-o",
            &format!("-p {port}"),
        ])
        .uid(who.0)
        .gid(who.1)
        .stdout(Stdio::null())
        .status()
        .expect("pg_ctl");
    assert!(
        ok.success(),
        "restored server did not start:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    loop {
        if try_psql(bin, port, "postgres", "select pg_is_in_recovery()").as_deref() == Ok("f") {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn stop(bin: &Binaries, who: (u32, u32), data: &Path) {
    run_as(
        who,
        &bin.dir.join("pg_ctl"),
        &[
            "stop",
            "-w",
            "-m",
            "immediate",
            "-D",
            &data.to_string_lossy(),
        ],
    );
}

fn overrides(data: &Path, socket: &Path, extra: &str) {
    let auto = data.join("postgresql.auto.conf");
    let mut text = std::fs::read_to_string(&auto).unwrap_or_default();
    text.push_str(&format!("\narchive_mode = 'off'\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n{extra}", socket.display()));
    std::fs::write(&auto, text).expect("write conf");
}

#[tokio::main]
async fn main() {
    if !common::invoked_by_cargo_bench("restore") {
        return;
    }
    let scale = env_num("DRILLBOOK_BENCH_SCALE", 30);
    let seconds = env_num("DRILLBOOK_BENCH_SECONDS", 60);
    let pgbackrest = common::installed("pgbackrest", "pgbackrest");
    let bin = common::pg_server();
    let root = std::env::temp_dir().join(format!("drillbook-bench-restore-{}", std::process::id()));
    let _files = RemoveOnDrop(root.clone());
    let archive = root.join("archive");
    let pgbr = root.join("pgbackrest");
    let conf = pgbr.join("pgbackrest.conf");
    let opts = InitOptions {
        archive_dir: Some(archive.clone()),
        unsafe_fast: false,
        settings: vec![
            ("max_wal_size".into(), "4GB".into()),
            // every segment goes to the plain archive and to the pgBackRest repository
            ("archive_command".into(), format!("(test -f {a}/%f || cp %p {a}/%f) && {p} --config={c} --stanza=bench archive-push %p", a = archive.display(), p = pgbackrest.display(), c = conf.display())),
        ],
        private: false,
        superuser: None,
    };
    let mut cluster = Cluster::create(bin.clone(), &root.join("source"), &opts)
        .await
        .expect("initdb");
    let who = owner(&root.join("source"));
    for d in [
        pgbr.clone(),
        pgbr.join("repo"),
        pgbr.join("log"),
        pgbr.join("lock"),
        root.join("restores"),
    ] {
        std::fs::create_dir_all(&d).expect("mkdir");
        std::os::unix::fs::chown(&d, Some(who.0), Some(who.1)).expect("chown");
    }
    std::os::unix::fs::chown(&root, Some(who.0), Some(who.1)).expect("chown");
    cluster.start().await.expect("start");
    std::fs::write(
        &conf,
        format!(
            "[global]\nrepo1-path={}\nlog-path={}\nlock-path={}\nlog-level-console=warn\nstart-fast=y\ncompress-type=none\n[bench]\npg1-path={}\npg1-port={}\npg1-socket-path={}\n",
            pgbr.join("repo").display(),
            pgbr.join("log").display(),
            pgbr.join("lock").display(),
            cluster.data_dir().display(),
            cluster.port,
            cluster.socket_dir().display()
        ),
    )
    .expect("write pgbackrest.conf");
    std::os::unix::fs::chown(&conf, Some(who.0), Some(who.1)).expect("chown");
    let conf_arg = format!("--config={}", conf.display());

    eprintln!("loading pgbench scale {scale} …");
    let admin = |sql: &str| {
        try_psql(&bin, cluster.port, "postgres", sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
    };
    admin("CREATE DATABASE bench");
    let pgbench = |args: &[&str]| {
        let status = Command::new(bin.dir.join("pgbench"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &cluster.port.to_string(),
                "-U",
                "postgres",
            ])
            .args(args)
            .arg("bench")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("pgbench");
        assert!(status.success(), "pgbench {args:?}");
    };
    pgbench(&["-i", "-q", "-s", &scale.to_string()]);

    // two backups of the same cluster at the same moment: pg_basebackup and pgBackRest
    let base = root.join("base");
    run_as(
        who,
        &bin.dir.join("pg_basebackup"),
        &[
            "-h",
            "127.0.0.1",
            "-p",
            &cluster.port.to_string(),
            "-U",
            "postgres",
            "-Fp",
            "-X",
            "stream",
            "-c",
            "fast",
            "-D",
            &base.to_string_lossy(),
        ],
    );
    run_as(
        who,
        &pgbackrest,
        &[&conf_arg, "--stanza=bench", "stanza-create"],
    );
    run_as(
        who,
        &pgbackrest,
        &[&conf_arg, "--stanza=bench", "--type=full", "backup"],
    );

    eprintln!("workload: pgbench -c2 -j2 -T{seconds}, target at the midpoint …");
    let half = (seconds / 2).max(1).to_string();
    pgbench(&["-c2", "-j2", "-T", &half]);
    // PostgreSQL's own spelling: recovery_target_time does not take `T…Z`
    let target = psql(
        &bin,
        cluster.port,
        "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'",
    );
    pgbench(&["-c2", "-j2", "-T", &half]);
    let last = psql(
        &bin,
        cluster.port,
        "SELECT pg_walfile_name(pg_switch_wal())",
    );
    while psql(
        &bin,
        cluster.port,
        "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver",
    ) < last
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    let wal_mb = std::fs::read_dir(&archive).expect("archive").count() as f64 * 16.0;
    let base_mb = dir_size(&base) as f64 / 1e6;
    cluster.stop().await.expect("stop source");

    let rounds = env_num("DRILLBOOK_BENCH_ROUNDS", 5) as usize;
    let mut times: [Vec<Duration>; 5] = Default::default();
    let mut replayed = 0u64;
    for round in 0..rounds {
        // rotate the order each round: writeback from one restore must not always land on
        // the same next one
        for m in 0..5 {
            let method = (round + m) % 5;
            let d = match method {
                0 => {
                    let (d, r) = restore_with_drillbook(&base, &archive, &target).await;
                    replayed = r;
                    d
                }
                1 => restore_by_hand(&bin, who, &root, &base, &archive, &target, round),
                3 => pgbackrest_restore_with_drillbook(&conf, &target).await,
                4 => whole_drillbook_run(&root, &base, &archive, &target, round),
                _ => restore_with_pgbackrest(
                    &bin,
                    who,
                    &root,
                    &pgbackrest,
                    &conf_arg,
                    &target,
                    round,
                ),
            };
            times[method].push(d);
        }
    }
    let best = |v: &[Duration]| v.iter().min().copied().unwrap_or_default();
    let bests: Vec<Duration> = times.iter().map(|v| best(v)).collect();
    let medians: Vec<Duration> = times.into_iter().map(median).collect();
    println!(
        "drillbook restore benchmark — base backup {base_mb:.0} MB, WAL archive {wal_mb:.0} MB, {:.0} MB replayed to the target ({rounds} rounds, order rotated)",
        replayed as f64 / 1e6
    );
    println!(
        "{:<48} {:>8} {:>10} {:>8} {:>10}",
        "", "median", "÷ by hand", "best", "÷ by hand"
    );
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    for (name, i) in [
        ("drillbook local.restore step (to promoted)", 0),
        ("by hand: cp + restore_command cp + start", 1),
        ("pgBackRest restore --type=time + start", 2),
        ("drillbook pgbackrest.restore step", 3),
        ("whole `drillbook run` process (local.restore)", 4),
    ] {
        println!(
            "{name:<48} {:>7.2}s {:>9.2}x {:>7.2}s {:>9.2}x",
            medians[i].as_secs_f64(),
            ratio(medians[i], medians[1]),
            bests[i].as_secs_f64(),
            ratio(bests[i], bests[1])
        );
    }
    println!(
        "local.restore step ÷ by hand (medians): {:.2} (goal at most 0.80)",
        ratio(medians[0], medians[1])
    );
    let overhead = ratio(medians[3], medians[2]);
    println!(
        "pgbackrest.restore ÷ pgBackRest by hand (medians): {overhead:.3} ({:+.1}%; goal under +5%)",
        (overhead - 1.0) * 100.0
    );
}

/// The same `local.restore` as [`restore_with_drillbook`], as the operator runs it: the whole
/// `drillbook run` process, from its start to its exit (the undo, the record and the drill
/// log included), in a directory of its own.
fn whole_drillbook_run(
    root: &Path,
    base: &Path,
    archive: &Path,
    target: &str,
    round: usize,
) -> Duration {
    let dir = root.join("restores").join(format!("process-{round}"));
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(
        dir.join("bench.yaml"),
        restore_runbook(base, archive, target),
    )
    .expect("runbook");
    let t = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_drillbook"))
        .args(["run", "bench.yaml", "p", "--format", "json"])
        .current_dir(&dir)
        .env("DRILLBOOK_OPERATOR", "bench")
        .stdin(Stdio::null())
        .output()
        .expect("drillbook run");
    let d = t.elapsed();
    assert!(
        out.status.success(),
        "drillbook run: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
    d
}

fn restore_runbook(base: &Path, archive: &Path, target: &str) -> String {
    format!(
        "version: 1\nname: bench\nprocedures:\n  p:\n    title: bench\n    kind: drill\n    steps:\n      - id: restore\n        local.restore: {{ base_backup: \"{}\", wal_archive: \"{}\", target: \"{target}\" }}\n",
        base.display(),
        archive.display()
    )
}

/// drillbook's `pgbackrest.restore` of the same stanza to the same target: the step's own
/// time (its undo, after the step, is not counted, as the by-hand stop is not).
async fn pgbackrest_restore_with_drillbook(conf: &Path, target: &str) -> Duration {
    let yaml = format!(
        "version: 1\nname: bench\nprocedures:\n  p:\n    title: bench\n    kind: drill\n    steps:\n      - id: restore\n        pgbackrest.restore: {{ stanza: bench, config: \"{}\", target: \"{target}\" }}\n",
        conf.display()
    );
    let rb = drillbook::runbook::load_str("bench.yaml", &yaml).expect("runbook");
    let opts = RunOptions {
        operator: "bench".into(),
        ..RunOptions::default()
    };
    let rec = drillbook::engine::run(&rb, "p", &opts, &Quiet, &Quiet, &Cancel::new())
        .await
        .expect("run");
    assert_eq!(rec.verdict, Verdict::Passed, "{:?}", rec.reason);
    Duration::from_millis(rec.steps[0].duration_ms.unwrap_or(0))
}

async fn restore_with_drillbook(base: &Path, archive: &Path, target: &str) -> (Duration, u64) {
    let yaml = restore_runbook(base, archive, target);
    let rb = drillbook::runbook::load_str("bench.yaml", &yaml).expect("runbook");
    let opts = RunOptions {
        operator: "bench".into(),
        ..RunOptions::default()
    };
    let rec = drillbook::engine::run(&rb, "p", &opts, &Quiet, &Quiet, &Cancel::new())
        .await
        .expect("run");
    assert_eq!(rec.verdict, Verdict::Passed, "{:?}", rec.reason);
    let replayed = rec.steps[0]
        .outputs
        .get("wal_replayed_bytes")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0);
    (
        Duration::from_millis(rec.steps[0].duration_ms.unwrap_or(0)),
        replayed,
    )
}

fn restore_by_hand(
    bin: &Binaries,
    who: (u32, u32),
    root: &Path,
    base: &Path,
    archive: &Path,
    target: &str,
    round: usize,
) -> Duration {
    let dir = root.join("restores").join(format!("hand-{round}"));
    let data = dir.join("data");
    let socket = dir.join("socket");
    for d in [&dir, &socket] {
        std::fs::create_dir_all(d).expect("mkdir");
        std::os::unix::fs::chown(d, Some(who.0), Some(who.1)).expect("chown");
    }
    let port = drillbook::pg::cluster::free_port().expect("port");
    let t = Instant::now();
    run_as(
        who,
        Path::new("/bin/cp"),
        &[
            "-a",
            &format!("{}/.", base.display()),
            &data.to_string_lossy(),
        ],
    );
    overrides(&data, &socket, &format!("restore_command = 'cp {}/%f %p'\nrecovery_target_time = '{target}'\nrecovery_target_action = 'promote'\n", archive.display()));
    std::fs::write(data.join("recovery.signal"), "").expect("signal");
    start_and_wait(bin, who, &data, port);
    let d = t.elapsed();
    stop(bin, who, &data);
    let _ = std::fs::remove_dir_all(&dir);
    d
}

fn restore_with_pgbackrest(
    bin: &Binaries,
    who: (u32, u32),
    root: &Path,
    pgbackrest: &Path,
    conf_arg: &str,
    target: &str,
    round: usize,
) -> Duration {
    let dir = root.join("restores").join(format!("pgbr-{round}"));
    let data = dir.join("data");
    let socket = dir.join("socket");
    for d in [&dir, &data, &socket] {
        std::fs::create_dir_all(d).expect("mkdir");
        std::os::unix::fs::chown(d, Some(who.0), Some(who.1)).expect("chown");
    }
    let port = drillbook::pg::cluster::free_port().expect("port");
    let t = Instant::now();
    run_as(
        who,
        pgbackrest,
        &[
            conf_arg,
            "--stanza=bench",
            &format!("--pg1-path={}", data.display()),
            "--type=time",
            &format!("--target={target}"),
            "--target-action=promote",
            "restore",
        ],
    );
    overrides(&data, &socket, "");
    start_and_wait(bin, who, &data, port);
    let d = t.elapsed();
    stop(bin, who, &data);
    let _ = std::fs::remove_dir_all(&dir);
    d
}

fn dir_size(p: &Path) -> u64 {
    std::fs::read_dir(p)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            _ => e.metadata().map(|m| m.len()).unwrap_or(0),
        })
        .sum()
}
