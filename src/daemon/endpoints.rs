//! The daemon's HTTP endpoints, `/livez`, `/healthz`, `/status` and `/metrics`, served with hyper's HTTP/1
//! connection (so a request split over several reads is parsed as a whole). One request per
//! connection, at most [`MAX_CONNECTIONS`] at once: past that a client waits in the listen
//! backlog for a slot rather than being refused, since its request is cheap and the slot frees
//! within [`CONNECTION_DEADLINE`]. An accept error (out of file descriptors, say) is retried
//! after a growing pause instead of in a tight loop.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::{Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::{metrics, Health, HealthSource, States};
use crate::cancel::Cancel;

/// Connections served at once.
const MAX_CONNECTIONS: usize = 64;
/// How long a client has to send its request line and headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a connection may hold its slot, whatever it does.
const CONNECTION_DEADLINE: Duration = Duration::from_secs(30);
/// The pause after the first accept error in a row, doubled after each further one.
const ACCEPT_BACKOFF_FIRST: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// How long `/healthz` and `/status` wait for the health source (a slow history store) before
/// answering 503.
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `/livez`, `/healthz`, `/status` and `/metrics` on `listener` until `shutdown`.
pub async fn serve(listener: TcpListener, states: States, health: HealthSource, shutdown: Cancel) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut failures = 0u32;
    loop {
        // a slot first: over the bound, connections wait in the kernel's backlog
        let slot = tokio::select! {
            s = slots.clone().acquire_owned() => s,
            () = shutdown.cancelled() => return,
        };
        let Ok(slot) = slot else {
            return;
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = shutdown.cancelled() => return,
        };
        let stream = match accepted {
            Ok((stream, _)) => {
                failures = 0;
                stream
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                let pause = accept_backoff(failures);
                if failures == 1 {
                    let addr = listener
                        .local_addr()
                        .map_or_else(|_| "the listener".to_owned(), |a| a.to_string());
                    eprintln!(
                        "drillbook daemon: cannot accept a connection on {addr}: {e}; retrying, waiting up to {}s between attempts",
                        ACCEPT_BACKOFF_MAX.as_secs()
                    );
                }
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    () = shutdown.cancelled() => return,
                }
                continue;
            }
        };
        let (states, health) = (states.clone(), health.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let (states, health) = (states.clone(), health.clone());
                let path = request.uri().path().to_owned();
                async move { Ok::<_, Infallible>(respond(&path, &states, &health).await) }
            });
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .keep_alive(false)
                .title_case_headers(true)
                .serve_connection(TokioIo::new(stream), service);
            // a client that went away or timed out needs no report
            let _ = tokio::time::timeout(CONNECTION_DEADLINE, connection).await;
            drop(slot);
        });
    }
}

/// The health source's answer, or, when it takes too long, an unhealthy one that says so.
async fn ask(health: &HealthSource) -> Health {
    match tokio::time::timeout(HEALTH_TIMEOUT, health()).await {
        Ok(h) => h,
        Err(_) => Health {
            healthy: false,
            summary: format!(
                "UNKNOWN: the backups' health could not be worked out within {}s (is the history store slow?)",
                HEALTH_TIMEOUT.as_secs()
            ),
            status: serde_json::json!({"status": "UNKNOWN", "healthy": false}).to_string(),
        },
    }
}

async fn respond(path: &str, states: &States, health: &HealthSource) -> Response<String> {
    let code = |healthy| {
        if healthy {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        }
    };
    let (status, content_type, body) = match path {
        "/livez" => (StatusCode::OK, "text/plain", "ok\n".to_owned()),
        "/healthz" => {
            let h = ask(health).await;
            (code(h.healthy), "text/plain", format!("{}\n", h.summary))
        }
        "/status" => {
            let h = ask(health).await;
            (code(h.healthy), "application/json", h.status + "\n")
        }
        "/metrics" => (StatusCode::OK, "text/plain; version=0.0.4", metrics(states)),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found\n".to_owned(),
        ),
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// The pause after the `failures`-th accept error in a row: 10 ms, doubling, at most 1 s.
fn accept_backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(31);
    ACCEPT_BACKOFF_FIRST
        .saturating_mul(1 << doublings)
        .min(ACCEPT_BACKOFF_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    fn healthy() -> HealthSource {
        Arc::new(|| {
            Box::pin(async {
                Health {
                    healthy: true,
                    summary: "ok".into(),
                    status: "{}".into(),
                }
            })
        })
    }

    #[test]
    fn accept_errors_back_off_from_10ms_doubling_to_1s() {
        let pauses: Vec<u128> = (1..=9).map(|n| accept_backoff(n).as_millis()).collect();
        assert_eq!(pauses, [10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        assert_eq!(accept_backoff(u32::MAX), ACCEPT_BACKOFF_MAX);
    }

    async fn start() -> (std::net::SocketAddr, Cancel) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let stop = Cancel::new();
        tokio::spawn(serve(listener, States::default(), healthy(), stop.clone()));
        (addr, stop)
    }

    /// Reads until the server closes the connection.
    async fn response(stream: &mut TcpStream) -> String {
        let mut out = String::new();
        stream.read_to_string(&mut out).await.expect("read");
        out
    }

    /// The whole response to `GET path`.
    async fn get(addr: std::net::SocketAddr, path: &str) -> String {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
        s.write_all(request.as_bytes()).await.expect("write");
        response(&mut s).await
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_sends_no_request_is_closed_after_the_header_timeout() {
        let (addr, stop) = start().await;
        let mut idle = TcpStream::connect(addr).await.expect("connect");
        let early = HEADER_READ_TIMEOUT - Duration::from_millis(100);
        let mut byte = [0u8; 1];
        assert!(
            tokio::time::timeout(early, idle.read(&mut byte))
                .await
                .is_err(),
            "closed before the header timeout"
        );
        let closed = tokio::time::timeout(Duration::from_millis(200), response(&mut idle)).await;
        assert_eq!(
            closed.as_deref(),
            Ok(""),
            "closed, without an answer, at the timeout"
        );
        stop.interrupt();
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_over_the_bound_waits_for_a_slot() {
        let (addr, stop) = start().await;
        let mut idle = Vec::new();
        for _ in 0..MAX_CONNECTIONS {
            idle.push(TcpStream::connect(addr).await.expect("connect"));
        }
        let mut waiting = TcpStream::connect(addr).await.expect("connect");
        waiting
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        let early = HEADER_READ_TIMEOUT - Duration::from_millis(100);
        let mut byte = [0u8; 1];
        assert!(
            tokio::time::timeout(early, waiting.read(&mut byte))
                .await
                .is_err(),
            "answered while every slot was taken"
        );
        // the idle connections time out and free their slots
        let answer = tokio::time::timeout(Duration::from_millis(200), response(&mut waiting))
            .await
            .expect("answered once the idle connections timed out");
        assert!(
            answer.starts_with("HTTP/1.1 200 OK\r\n") && answer.ends_with("\r\n\r\nok\n"),
            "{answer}"
        );
        stop.interrupt();
    }

    #[tokio::test(start_paused = true)]
    async fn an_unhealthy_or_silent_source_is_503_while_livez_stays_200() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let stop = Cancel::new();
        let broken = Arc::new(AtomicBool::new(true));
        let flag = broken.clone();
        let source: HealthSource = Arc::new(move || {
            let broken = flag.load(Ordering::SeqCst);
            Box::pin(async move {
                if broken {
                    Health {
                        healthy: false,
                        summary: "CRITICAL: shop: check age CRITICAL".into(),
                        status: "{\"healthy\":false}".into(),
                    }
                } else {
                    // a store that never answers
                    std::future::pending().await
                }
            })
        });
        tokio::spawn(serve(listener, States::default(), source, stop.clone()));
        let get = |path: &'static str| get(addr, path);
        let health = get("/healthz").await;
        assert!(
            health.starts_with("HTTP/1.1 503 Service Unavailable\r\n")
                && health.ends_with("\r\n\r\nCRITICAL: shop: check age CRITICAL\n"),
            "{health}"
        );
        let status = get("/status").await;
        assert!(status.starts_with("HTTP/1.1 503 "), "{status}");
        assert!(status.ends_with("{\"healthy\":false}\n"), "{status}");
        broken.store(false, Ordering::SeqCst);
        // the source hangs: the answer comes at the timeout (paused time jumps there)
        let silent = get("/healthz").await;
        assert!(
            silent.starts_with("HTTP/1.1 503 ") && silent.contains("UNKNOWN: "),
            "{silent}"
        );
        assert!(get("/livez").await.starts_with("HTTP/1.1 200 OK\r\n"));
        stop.interrupt();
    }

    #[tokio::test]
    async fn routes_status_codes_and_content_types() {
        let (addr, stop) = start().await;
        let get = |path: &'static str| get(addr, path);
        let health = get("/healthz").await;
        assert!(health.starts_with("HTTP/1.1 200 OK\r\n"), "{health}");
        assert!(
            health.contains("\r\nContent-Type: text/plain\r\n"),
            "{health}"
        );
        assert!(health.contains("\r\nContent-Length: 3\r\n"), "{health}");
        assert!(health.contains("\r\nConnection: close\r\n"), "{health}");
        assert!(health.ends_with("\r\n\r\nok\n"), "{health}");
        let metrics = get("/metrics").await;
        assert!(
            metrics.contains("\r\nContent-Type: text/plain; version=0.0.4\r\n"),
            "{metrics}"
        );
        let body = super::metrics(&States::default());
        assert!(metrics.ends_with(&format!("\r\n\r\n{body}")), "{metrics}");
        let live = get("/livez").await;
        assert!(
            live.starts_with("HTTP/1.1 200 OK\r\n") && live.ends_with("\r\n\r\nok\n"),
            "{live}"
        );
        let status = get("/status").await;
        assert!(
            status.contains("\r\nContent-Type: application/json\r\n")
                && status.ends_with("\r\n\r\n{}\n"),
            "{status}"
        );
        let missing = get("/nope").await;
        assert!(
            missing.starts_with("HTTP/1.1 404 Not Found\r\n")
                && missing.ends_with("\r\n\r\nnot found\n"),
            "{missing}"
        );
        stop.interrupt();
    }
}
