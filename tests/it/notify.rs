//! Alerts and heartbeats through the real binary, against in-process receivers that record
//! every request: exactly one message per destination for a failing check run, the recovery
//! afterwards, repeats held back, and a receiver that fails never changing the exit code.

use std::sync::{Arc, Mutex};

use crate::support::{Cli, HttpServer};

/// Every request a receiver got: (path, JSON body or Null).
type Log = Arc<Mutex<Vec<(String, serde_json::Value)>>>;

/// A receiver answering every request with `status`.
fn receiver(status: u16) -> (HttpServer, Log) {
    let log: Log = Arc::default();
    let kept = log.clone();
    let router =
        axum::Router::new().fallback(move |uri: axum::http::Uri, body: axum::body::Bytes| {
            let kept = kept.clone();
            async move {
                let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
                kept.lock()
                    .expect("log")
                    .push((uri.path().to_owned(), json));
                axum::http::StatusCode::from_u16(status).expect("status")
            }
        });
    (HttpServer::start(router), log)
}

fn got(log: &Log) -> Vec<(String, serde_json::Value)> {
    log.lock().expect("log").clone()
}

/// A runbook with one check that passes while `ok` exists in the working directory, and the
/// four kinds of destination.
const RUNBOOK: &str = r#"version: 1
name: watched
checks:
  - id: backup-present
    title: The backup file exists
    shell: test -f ok
alerts:
  - slack: { webhook: "{{ env.SLACK_WEBHOOK_URL }}" }
    on: [failure, recovered]
  - webhook: { url: "{{ env.HOOK_URL }}", headers: { X-Team: platform } }
    on: [failure, success]
  - betterstack: { heartbeat: "{{ env.BETTERSTACK_HEARTBEAT_URL }}" }
    on: [success, failure]
  - pagerduty: { routing_key: "{{ env.PD_ROUTING_KEY }}", url: "{{ env.PD_URL }}" }
procedures:
  noop:
    title: Nothing
    kind: drill
    steps:
      - id: nothing
        shell: "true"
"#;

struct Receivers {
    slack: (HttpServer, Log),
    hook: (HttpServer, Log),
    beat: (HttpServer, Log),
    pd: (HttpServer, Log),
}

impl Receivers {
    fn new(status: u16) -> Receivers {
        Receivers {
            slack: receiver(status),
            hook: receiver(status),
            beat: receiver(status),
            pd: receiver(status),
        }
    }

    fn cli(&self, dir: &Cli) -> Cli {
        let c = Cli::new()
            .runbook(RUNBOOK)
            .env(
                "SLACK_WEBHOOK_URL",
                &format!("{}/services/T0/B0/secret", self.slack.0.url()),
            )
            .env("HOOK_URL", &format!("{}/hook", self.hook.0.url()))
            .env(
                "BETTERSTACK_HEARTBEAT_URL",
                &format!("{}/api/v1/heartbeat/abc", self.beat.0.url()),
            )
            .env("PD_ROUTING_KEY", "pd-key-123")
            .env("PD_URL", &format!("{}/v2/enqueue", self.pd.0.url()));
        let history = dir.dir.join("drills/history.jsonl").display().to_string();
        c.args(["check", "runbook.yaml", "--history", &history])
    }
}

fn check(r: &Receivers, state: &Cli, ok: bool) -> crate::support::Run {
    if ok {
        std::fs::write(state.dir.join("ok"), "").expect("ok file");
    } else {
        let _ = std::fs::remove_file(state.dir.join("ok"));
    }
    std::fs::write(state.dir.join("runbook.yaml"), RUNBOOK).expect("runbook");
    let c = r.cli(state);
    let mut cmd = c.command();
    cmd.current_dir(state.dir.path());
    let out = cmd.output().expect("check");
    crate::support::Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn a_failing_check_sends_one_message_each_then_the_recovery() {
    let r = Receivers::new(200);
    let state = Cli::new();
    check(&r, &state, false).code(2);
    let slack = got(&r.slack.1);
    assert_eq!(slack.len(), 1, "{slack:#?}");
    assert_eq!(slack[0].0, "/services/T0/B0/secret");
    assert_eq!(slack[0].1["blocks"][0]["type"], "header");
    assert!(
        slack[0].1["text"]
            .as_str()
            .is_some_and(|t| t.contains("check failure: watched / checks")),
        "{:#}",
        slack[0].1
    );
    assert!(serde_json::to_string(&slack[0].1)
        .expect("json")
        .contains("backup-present (CRITICAL)"));
    let hook = got(&r.hook.1);
    assert_eq!(hook.len(), 1);
    assert_eq!(
        (hook[0].1["event"].as_str(), hook[0].1["ok"].as_bool()),
        (Some("failure"), Some(false))
    );
    assert_eq!(
        got(&r.beat.1)
            .iter()
            .map(|(p, _)| p.as_str())
            .collect::<Vec<_>>(),
        ["/api/v1/heartbeat/abc/fail"]
    );
    let pd = got(&r.pd.1);
    assert_eq!(pd.len(), 1);
    assert_eq!(pd[0].1["routing_key"], "pd-key-123");
    assert_eq!(pd[0].1["event_action"], "trigger");
    assert_eq!(pd[0].1["dedup_key"], "drillbook:watched:checks");
    assert_eq!(pd[0].1["payload"]["severity"], "critical");
    // the history records what was sent
    let last = std::fs::read_to_string(state.dir.join("drills/history.jsonl")).expect("history");
    let entry: serde_json::Value =
        serde_json::from_str(last.lines().last().expect("entry")).expect("json");
    let sent: Vec<(String, String, String)> = entry["record"]["notifications"]
        .as_array()
        .expect("notifications")
        .iter()
        .map(|n| {
            let f = |k: &str| n[k].as_str().expect("field").to_owned();
            (f("destination"), f("event"), f("outcome"))
        })
        .collect();
    assert_eq!(
        sent,
        ["slack", "webhook", "betterstack", "pagerduty"].map(|d| (
            d.to_owned(),
            "failure".to_owned(),
            "sent".to_owned()
        ))
    );

    // fixed: Slack hears of the recovery, the webhook of the success, the heartbeat pings,
    // PagerDuty resolves the same incident
    check(&r, &state, true).code(0);
    let slack = got(&r.slack.1);
    assert_eq!(slack.len(), 2);
    assert!(slack[1].1["text"]
        .as_str()
        .is_some_and(|t| t.contains("check recovered")));
    assert_eq!(got(&r.hook.1)[1].1["event"], "success");
    assert_eq!(got(&r.beat.1)[1].0, "/api/v1/heartbeat/abc");
    let pd = got(&r.pd.1);
    assert_eq!(pd.len(), 2);
    assert_eq!(
        pd[1].1,
        serde_json::json!({"routing_key": "pd-key-123", "event_action": "resolve", "dedup_key": "drillbook:watched:checks"})
    );

    // healthy again: heartbeats and the success webhook only
    check(&r, &state, true).code(0);
    assert_eq!(got(&r.slack.1).len(), 2);
    assert_eq!(got(&r.pd.1).len(), 2);
    assert_eq!(got(&r.beat.1).len(), 3);
}

#[test]
fn a_repeated_failure_is_not_resent_within_the_repeat_window() {
    let r = Receivers::new(200);
    let state = Cli::new();
    check(&r, &state, false).code(2);
    check(&r, &state, false).code(2);
    assert_eq!(
        got(&r.slack.1).len(),
        1,
        "Slack was paged twice within an hour"
    );
    assert_eq!(got(&r.pd.1).len(), 1);
    assert_eq!(got(&r.hook.1).len(), 1);
    // a heartbeat's /fail is not a message: it goes every time
    assert_eq!(got(&r.beat.1).len(), 2);
}

#[test]
fn a_failing_receiver_is_retried_and_never_changes_the_exit_code() {
    let r = Receivers::new(500);
    let state = Cli::new();
    let run = check(&r, &state, true);
    run.code(0);
    assert_eq!(got(&r.beat.1).len(), 3, "three attempts");
    assert!(
        run.stderr
            .contains("the betterstack alert could not be sent: HTTP 500 after 3 attempts"),
        "{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("secret") && !run.stderr.contains("abc"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_receiver_that_hangs_times_out_and_the_run_goes_on() {
    // a Slack endpoint that never answers in time
    let log: Log = Arc::default();
    let kept = log.clone();
    let slow = HttpServer::start(axum::Router::new().fallback(move || {
        let kept = kept.clone();
        async move {
            kept.lock()
                .expect("log")
                .push(("/slow".into(), serde_json::Value::Null));
            tokio::time::sleep(std::time::Duration::from_secs(30)).await;
            axum::http::StatusCode::OK
        }
    }));
    let state = Cli::new();
    std::fs::write(state.dir.join("runbook.yaml"), RUNBOOK).expect("runbook");
    let r = Receivers::new(200);
    let c = r
        .cli(&state)
        .env("SLACK_WEBHOOK_URL", &format!("{}/hook", slow.url()))
        .env("DRILLBOOK_NOTIFY_TIMEOUT", "0.5");
    let mut cmd = c.command();
    cmd.current_dir(state.dir.path());
    let out = cmd.output().expect("check");
    // the check failed (no `ok` file): exit 2, whatever Slack did
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the slack alert could not be sent: timed out after 3 attempts"),
        "{err}"
    );
    assert_eq!(log.lock().expect("log").len(), 3);
    // the others still got their message
    assert_eq!(got(&r.pd.1).len(), 1);
}

/// A minimal SMTP server on loopback that records each message's envelope and data.
fn smtp_receiver() -> (u16, Arc<Mutex<Vec<String>>>) {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let mail: Arc<Mutex<Vec<String>>> = Arc::default();
    let kept = mail.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let mut out = conn.try_clone().expect("clone");
            let mut lines = BufReader::new(conn);
            let _ = out.write_all(b"220 localhost ESMTP test\r\n");
            let mut session = String::new();
            let mut line = String::new();
            loop {
                line.clear();
                if lines.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                let cmd = line.trim_end().to_uppercase();
                let reply: &[u8] = if cmd.starts_with("EHLO") {
                    b"250-localhost\r\n250 8BITMIME\r\n"
                } else if cmd.starts_with("MAIL") || cmd.starts_with("RCPT") {
                    session.push_str(line.trim_end());
                    session.push('\n');
                    b"250 OK\r\n"
                } else if cmd == "DATA" {
                    let _ = out.write_all(b"354 go ahead\r\n");
                    loop {
                        line.clear();
                        if lines.read_line(&mut line).unwrap_or(0) == 0 || line == ".\r\n" {
                            break;
                        }
                        session.push_str(&line);
                    }
                    kept.lock()
                        .expect("mail")
                        .push(std::mem::take(&mut session));
                    b"250 queued\r\n"
                } else if cmd == "QUIT" {
                    let _ = out.write_all(b"221 bye\r\n");
                    break;
                } else {
                    b"250 OK\r\n"
                };
                let _ = out.write_all(reply);
            }
        }
    });
    (port, mail)
}

#[test]
fn an_email_alert_is_delivered_through_smtp() {
    let (port, mail) = smtp_receiver();
    let yaml = r#"version: 1
name: mailed
checks:
  - id: backup-present
    shell: test -f ok
alerts:
  - email: { smtp: "{{ env.SMTP_URL }}", from: drillbook@example.com, to: [oncall@example.com, dba@example.com] }
    on: [failure]
procedures:
  noop:
    title: Nothing
    kind: drill
    steps:
      - id: nothing
        shell: "true"
"#;
    let r = Cli::new()
        .runbook(yaml)
        .env("SMTP_URL", &format!("smtp://127.0.0.1:{port}"))
        .args(["check", "runbook.yaml"])
        .run();
    r.code(2);
    let mail = mail.lock().expect("mail").clone();
    assert_eq!(mail.len(), 1, "{}", r.stderr);
    let m = &mail[0];
    assert!(m.contains("MAIL FROM:<drillbook@example.com>"), "{m}");
    assert!(
        m.contains("RCPT TO:<oncall@example.com>") && m.contains("RCPT TO:<dba@example.com>"),
        "{m}"
    );
    assert!(
        m.contains("Subject: [drillbook] check failure: mailed / checks"),
        "{m}"
    );
    assert!(m.contains("backup-present (CRITICAL)"), "{m}");
}

/// A receiver that never answers: an interrupt while the alert is being sent stops
/// drillbook at once — the alert is recorded as not sent, the record is still appended, and
/// the exit code stays the run's. Without an interrupt, the alerts' deadline ends it.
#[test]
fn an_interrupt_or_the_deadline_stops_alerts_and_the_exit_code_stays() {
    let (arrived, arrival) = std::sync::mpsc::channel::<()>();
    let arrived = Arc::new(Mutex::new(arrived));
    let hang = HttpServer::start(axum::Router::new().fallback(move || {
        let arrived = arrived.clone();
        async move {
            let _ = arrived.lock().expect("channel").send(());
            std::future::pending::<()>().await;
            axum::http::StatusCode::OK
        }
    }));
    let yaml = "version: 1\nname: alerted\nprocedures:\n  p:\n    title: P\n    kind: drill\n    steps:\n      - id: ok\n        shell: 'true'\nalerts:\n  - webhook: { url: \"{{ env.HOOK_URL }}\" }\n    on: [success]\n";
    let cli = || {
        Cli::new()
            .runbook(yaml)
            .env("HOOK_URL", &format!("{}/hook", hang.url()))
            .env("DRILLBOOK_NOTIFY_TIMEOUT", "600")
            .args(["run", "runbook.yaml", "p", "--format", "json"])
    };
    let interrupted = cli();
    let child = interrupted
        .command()
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    arrival
        .recv_timeout(std::time::Duration::from_secs(120))
        .expect("the alert reached the receiver");
    let killed = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("the webhook alert was not sent: interrupted")
            && stderr.contains("recorded as entry 1"),
        "{stderr}"
    );
    let history =
        std::fs::read_to_string(interrupted.dir.join("drills/history.jsonl")).expect("history");
    assert!(history.contains("not sent: interrupted"), "{history}");
    // nobody interrupts: the deadline ends the alerts
    let r = cli().env("DRILLBOOK_NOTIFY_DEADLINE", "1").run();
    r.code(0);
    assert!(
        r.stderr
            .contains("the webhook alert was not sent: the alerts ran out of time"),
        "{}",
        r.stderr
    );
}

/// A step's output reaches Slack as text: its `<`, `>` and `&` escaped, so it cannot ping
/// the channel, mention someone or forge a link, in the fallback text or any block.
#[test]
fn step_output_cannot_ping_or_link_in_slack() {
    let slack = receiver(200);
    let yaml = r#"version: 1
name: loud
alerts:
  - slack: { webhook: "{{ env.SLACK_WEBHOOK_URL }}" }
    on: [failure]
procedures:
  drill:
    title: Drill
    kind: drill
    steps:
      - id: noisy
        shell: "echo '<!channel> see <https://evil.example/x|the fix> & <@U123>' >&2; exit 1"
"#;
    let r = Cli::new()
        .runbook(yaml)
        .env(
            "SLACK_WEBHOOK_URL",
            &format!("{}/services/T0/B0/secret", slack.0.url()),
        )
        .args(["run", "runbook.yaml", "drill"])
        .run();
    r.code(1);
    let sent = got(&slack.1);
    assert_eq!(sent.len(), 1, "{sent:#?}\n{}", r.stderr);
    let body = serde_json::to_string(&sent[0].1).expect("json");
    for active in ["<!channel>", "<https://", "<@U123>", "& <"] {
        assert!(!body.contains(active), "`{active}` reached Slack: {body}");
    }
    assert!(
        body.contains(
            "&lt;!channel&gt; see &lt;https://evil.example/x|the fix&gt; &amp; &lt;@U123&gt;"
        ),
        "{body}"
    );
}
