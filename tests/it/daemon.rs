//! `drillbook daemon` as a process: its loopback endpoints answer, a non-loopback address is
//! refused, and SIGTERM stops it cleanly; and its endpoints answer a request that arrives in
//! two TCP segments. (The scheduling itself is tested under paused time in `src/daemon.rs`.)

use std::io::{Read, Write};
use std::net::SocketAddr;

use crate::support::Cli;

const RUNBOOK: &str = r#"version: 1
name: watched
checks:
  - id: always
    shell: "true"
procedures:
  drill:
    title: Drill
    kind: drill
    schedule: "0 9 1 * *"
    steps:
      - id: a
        shell: "true"
"#;

fn get(port: u16, path: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

#[test]
fn the_daemon_serves_health_and_metrics_and_stops_on_sigterm() {
    serves_and_stops_on("TERM");
}

/// A closed terminal or `systemctl reload`-style SIGHUP stops it as cleanly as SIGTERM.
#[test]
fn the_daemon_stops_cleanly_on_sighup() {
    serves_and_stops_on("HUP");
}

fn serves_and_stops_on(signal: &str) {
    let port = drillbook::pg::cluster::free_port().expect("port");
    let c = Cli::new().runbook(RUNBOOK).args([
        "daemon",
        "runbook.yaml",
        "--listen",
        &format!("127.0.0.1:{port}"),
    ]);
    let child = c
        .command()
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("daemon");
    // wait for the listener (the process starts in well under a second)
    let health = (0..100).find_map(|_| {
        let r = get(port, "/healthz");
        if r.is_none() {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        r
    });
    let health = health.expect("the daemon never answered /healthz");
    assert!(
        health.starts_with("HTTP/1.1 200") && health.ends_with("ok\n"),
        "{health}"
    );
    let metrics = get(port, "/metrics").expect("metrics");
    assert!(metrics.contains("drillbook_daemon_up 1"), "{metrics}");
    assert!(get(port, "/nope").expect("404").starts_with("HTTP/1.1 404"));
    let pid = child.id().to_string();
    assert!(std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid])
        .status()
        .expect("kill")
        .success());
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("watched/drill on `0 9 1 * *`")
            && err.contains("watched/checks on `0 0 * * *`"),
        "{err}"
    );
    assert!(err.contains("stopping"), "{err}");
}

#[test]
fn the_daemon_listens_on_loopback_only() {
    let r = Cli::new()
        .runbook(RUNBOOK)
        .args(["daemon", "runbook.yaml", "--listen", "0.0.0.0:9187"])
        .run();
    r.code(2);
    assert!(r.stderr.contains("loopback"), "{}", r.stderr);
}

#[test]
fn a_request_in_two_segments_gets_the_metrics() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let server = listener.local_addr().expect("server address");
    let states = drillbook::daemon::States::default();
    states.lock().expect("states").insert(
        "watched/drill".into(),
        drillbook::daemon::JobState {
            runs: 2,
            last_exit: Some(0),
            ..Default::default()
        },
    );
    let stop = drillbook::cancel::Cancel::new();
    rt.spawn(drillbook::daemon::serve(
        listener,
        states.clone(),
        stop.clone(),
    ));

    let mut s = std::net::TcpStream::connect(server).expect("connect");
    s.set_nodelay(true).expect("nodelay");
    let (first, rest) = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".split_at(8);
    s.write_all(first.as_bytes()).expect("first segment");
    s.flush().expect("flush");
    let client = s.local_addr().expect("client address");
    wait_until_read(client, server);
    s.write_all(rest.as_bytes()).expect("second segment");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("response");

    assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
    assert!(
        out.contains("\r\nContent-Type: text/plain; version=0.0.4\r\n"),
        "{out}"
    );
    let body = drillbook::daemon::metrics(&states);
    assert!(body.contains("drillbook_job_runs{job=\"watched/drill\"} 2\n"));
    assert!(out.ends_with(&format!("\r\n\r\n{body}")), "{out}");
    stop.interrupt();
}

/// Waits until what `client` sent to `server` was acknowledged and then read by the server
/// process, from the send and receive queues Linux shows in /proc/net/tcp. A bounded busy
/// wait: if the queues never drain it returns anyway, and the test only loses its edge.
fn wait_until_read(client: SocketAddr, server: SocketAddr) {
    let hex = |a: SocketAddr| match a {
        SocketAddr::V4(a) => format!(
            "{:08X}:{:04X}",
            u32::from_ne_bytes(a.ip().octets()),
            a.port()
        ),
        SocketAddr::V6(_) => unreachable!("the test listens on 127.0.0.1"),
    };
    // (tx_queue, rx_queue) of the socket from `local` to `remote`
    let queues = |local: &str, remote: &str| -> Option<(u64, u64)> {
        let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
        table.lines().skip(1).find_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.get(1) != Some(&local) || f.get(2) != Some(&remote) {
                return None;
            }
            let (tx, rx) = f.get(4)?.split_once(':')?;
            Some((
                u64::from_str_radix(tx, 16).ok()?,
                u64::from_str_radix(rx, 16).ok()?,
            ))
        })
    };
    let (c, s) = (hex(client), hex(server));
    let mut acknowledged = false;
    for _ in 0..100_000 {
        if !acknowledged {
            acknowledged = queues(&c, &s).is_some_and(|(tx, _)| tx == 0);
        } else if queues(&s, &c).is_some_and(|(_, rx)| rx == 0) {
            return;
        }
        std::thread::yield_now();
    }
}
