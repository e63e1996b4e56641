//! `drillbook daemon` as a process: its loopback endpoints answer, a non-loopback address is
//! refused, and SIGTERM stops it cleanly. (The scheduling itself is tested under paused time
//! in `src/daemon.rs`.)

use std::io::{Read, Write};

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
        .args(["-TERM", &pid])
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
