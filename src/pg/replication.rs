//! A replication connection (`replication=database`): the walsender session that creates a
//! temporary logical slot with an exported snapshot. tokio-postgres sends a fixed set of
//! startup parameters, so the stream under it adds `replication=database` to the startup
//! message as it goes out (inside TLS when the connection is encrypted). Only the simple
//! query protocol is used on it: a walsender does not speak the extended one.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::config::{Host, SslMode as PgSslMode};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};
use tokio_postgres::{Client, NoTls};

use super::connect::ConnectError;
use super::url::{ConnSpec, SslMode};

/// The startup message's protocol version (3.0).
const PROTOCOL_3: u32 = 196_608;
/// SSLRequest and GSSENCRequest: sent before the startup message, passed through.
const NEGOTIATION: [u32; 2] = [80_877_103, 80_877_104];

/// Adds `replication=database` to a startup message `buf` (which holds it whole).
fn with_replication(buf: &[u8]) -> Option<Vec<u8>> {
    let len = u32::from_be_bytes(buf.get(0..4)?.try_into().ok()?) as usize;
    let code = u32::from_be_bytes(buf.get(4..8)?.try_into().ok()?);
    if code != PROTOCOL_3 || len != buf.len() || buf.last() != Some(&0) {
        return None;
    }
    let mut out = Vec::with_capacity(len + 24);
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&buf[4..len - 1]);
    out.extend_from_slice(b"replication\0database\0\0");
    let n = u32::try_from(out.len()).ok()?;
    out[0..4].copy_from_slice(&n.to_be_bytes());
    Some(out)
}

enum State {
    /// Before the startup message.
    Watching,
    /// Writing the rewritten startup message; `consumed` is what the caller gave.
    Sending {
        bytes: Vec<u8>,
        done: usize,
        consumed: usize,
    },
    Passing,
}

/// A stream that adds `replication=database` to the startup message written through it.
struct Startup<S> {
    inner: S,
    state: State,
}

impl<S> Startup<S> {
    fn new(inner: S) -> Startup<S> {
        Startup {
            inner,
            state: State::Watching,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Startup<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Startup<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let me = &mut *self;
        if let State::Watching = me.state {
            let code = buf
                .get(4..8)
                .and_then(|b| b.try_into().ok())
                .map(u32::from_be_bytes);
            match code {
                Some(c) if NEGOTIATION.contains(&c) => {
                    return Pin::new(&mut me.inner).poll_write(cx, buf)
                }
                _ => match with_replication(buf) {
                    Some(bytes) => {
                        me.state = State::Sending {
                            bytes,
                            done: 0,
                            consumed: buf.len(),
                        }
                    }
                    None => me.state = State::Passing,
                },
            }
        }
        if let State::Sending {
            bytes,
            done,
            consumed,
        } = &mut me.state
        {
            while *done < bytes.len() {
                match Pin::new(&mut me.inner).poll_write(cx, &bytes[*done..]) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                    Poll::Ready(Ok(n)) => *done += n,
                    other => return other,
                }
            }
            let consumed = *consumed;
            me.state = State::Passing;
            return Poll::Ready(Ok(consumed));
        }
        Pin::new(&mut me.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<S: TlsStream + Unpin> TlsStream for Startup<S> {
    fn channel_binding(&self) -> ChannelBinding {
        self.inner.channel_binding()
    }
}

/// A TLS connector whose encrypted stream adds the parameter too.
struct Tls<T>(T);

impl<S, T: TlsConnect<S>> TlsConnect<S> for Tls<T>
where
    T::Future: Send + 'static,
    T::Stream: Unpin,
{
    type Stream = Startup<T::Stream>;
    type Error = T::Error;
    type Future = Pin<Box<dyn std::future::Future<Output = Result<Self::Stream, T::Error>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        let f = self.0.connect(stream);
        Box::pin(async move { f.await.map(Startup::new) })
    }
}

/// A plain socket to the first host of `spec`.
enum Socket {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr) => {
        match &mut *$self {
            Socket::Tcp($s) => $e,
            Socket::Unix($s) => $e,
        }
    };
}

impl AsyncRead for Socket {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        delegate!(self, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => Pin::new(s).poll_write(cx, buf))
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => Pin::new(s).poll_flush(cx))
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => Pin::new(s).poll_shutdown(cx))
    }
}

async fn socket(spec: &ConnSpec) -> io::Result<(Socket, String)> {
    let config = &spec.config;
    let port = config.get_ports().first().copied().unwrap_or(5432);
    match config.get_hosts().first() {
        Some(Host::Tcp(h)) => {
            let s = tokio::net::TcpStream::connect((h.as_str(), port)).await?;
            s.set_nodelay(true)?;
            Ok((Socket::Tcp(s), h.clone()))
        }
        Some(Host::Unix(dir)) => {
            let path = dir.join(format!(".s.PGSQL.{port}"));
            Ok((
                Socket::Unix(tokio::net::UnixStream::connect(path).await?),
                String::new(),
            ))
        }
        None => {
            let path = format!("/var/run/postgresql/.s.PGSQL.{port}");
            Ok((
                Socket::Unix(tokio::net::UnixStream::connect(path).await?),
                String::new(),
            ))
        }
    }
}

/// Opens a replication connection (`replication=database`) to `spec`'s first host.
pub async fn connect(spec: &ConnSpec) -> Result<Client, ConnectError> {
    let fail = |reason: String| ConnectError {
        display: spec.display.clone(),
        reason,
    };
    let work = async {
        let (sock, host) = socket(spec).await.map_err(|e| e.to_string())?;
        let stream = Startup::new(sock);
        let mut config = spec.config.clone();
        if spec.ssl == SslMode::Disable {
            config.ssl_mode(PgSslMode::Disable);
            let (client, conn) = config
                .connect_raw(stream, NoTls)
                .await
                .map_err(|e| super::connect::describe(&e))?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            return Ok(client);
        }
        config.ssl_mode(if spec.ssl == SslMode::Prefer {
            PgSslMode::Prefer
        } else {
            PgSslMode::Require
        });
        let mut make = super::connect::rustls_connector(spec)?;
        let tls = <tokio_postgres_rustls::MakeRustlsConnect as MakeTlsConnect<
            Startup<Socket>,
        >>::make_tls_connect(&mut make, &host)
        .map_err(|e| e.to_string())?;
        let (client, conn) = config
            .connect_raw(stream, Tls(tls))
            .await
            .map_err(|e| super::connect::describe(&e))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(client)
    };
    match tokio::time::timeout(
        spec.connect_timeout
            .saturating_add(std::time::Duration::from_secs(1)),
        work,
    )
    .await
    {
        Ok(r) => r.map_err(fail),
        Err(_) => Err(fail("timed out".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_the_parameter() {
        let mut msg = vec![0, 0, 0, 0, 0, 3, 0, 0];
        msg.extend_from_slice(b"user\0postgres\0\0");
        let n = msg.len() as u32;
        msg[0..4].copy_from_slice(&n.to_be_bytes());
        let out = with_replication(&msg).unwrap();
        assert_eq!(
            &out[8..],
            b"user\0postgres\0replication\0database\0\0".as_slice()
        );
        assert_eq!(
            u32::from_be_bytes(out[0..4].try_into().unwrap()) as usize,
            out.len()
        );
        assert!(with_replication(&msg[..msg.len() - 1]).is_none());
    }
}
