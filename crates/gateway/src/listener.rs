//! The API listener: accepts connections within bounds, so that no client can make the
//! server hold unbounded connections, file descriptors or time.
//!
//! - at most `max_connections` connections, and `max_connections_per_peer` from one IP;
//!   a connection over a cap gets a 503 with `Retry-After` and is closed, rather than
//!   left to hang;
//! - request headers must arrive within `header_timeout`, and are capped in size;
//! - a connection with no request in flight that moves no bytes for `idle_timeout` is
//!   closed (half-open and silent connections included);
//! - accept errors such as EMFILE back off and retry: the listener never stops.
//!
//! Body timeouts are the auth layer's (it reads bodies); this module never sees one.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};

/// Bounds on what clients can make the listener hold.
#[derive(Debug, Clone)]
pub struct ListenerLimits {
    pub max_connections: usize,
    /// 0: no per-peer cap (for a server behind a proxy that connects from one address).
    pub max_connections_per_peer: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
}

impl Default for ListenerLimits {
    fn default() -> Self {
        ListenerLimits {
            max_connections: 4096,
            max_connections_per_peer: 1024,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// Largest request head (request line and headers) read into memory.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Refusals (503s being written) at once; past this, a connection over a cap is closed
/// without an answer, so refusing cannot itself hold unbounded descriptors.
const MAX_REFUSING: usize = 256;
/// How long a 503 may take to write.
const REFUSAL_WRITE_TIMEOUT: Duration = Duration::from_secs(1);
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

const OVERLOADED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\n\
x-amzn-errortype: ServiceException\r\n\
retry-after: 1\r\n\
connection: close\r\n\
content-length: 87\r\n\r\n\
{\"Type\":\"Service\",\"message\":\"The server has too many open connections; retry shortly.\"}";

/// Open connections, in total and per peer address.
#[derive(Default)]
struct Connections {
    total: AtomicUsize,
    per_peer: Mutex<HashMap<IpAddr, usize>>,
    refusing: AtomicUsize,
    closed: Notify,
}

/// One admitted connection; dropping it gives its places back.
struct Admitted {
    table: Arc<Connections>,
    peer: IpAddr,
}

impl Connections {
    fn admit(self: &Arc<Self>, peer: IpAddr, limits: &ListenerLimits) -> Option<Admitted> {
        let mut per_peer = self.per_peer.lock().unwrap_or_else(|e| e.into_inner());
        let mine = per_peer.get(&peer).copied().unwrap_or(0);
        if self.total.load(Ordering::Relaxed) >= limits.max_connections
            || (limits.max_connections_per_peer > 0 && mine >= limits.max_connections_per_peer)
        {
            return None;
        }
        per_peer.insert(peer, mine + 1);
        self.total.fetch_add(1, Ordering::Relaxed);
        Some(Admitted {
            table: self.clone(),
            peer,
        })
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut per_peer = self
            .table
            .per_peer
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(n) = per_peer.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                per_peer.remove(&self.peer);
            }
        }
        self.table.total.fetch_sub(1, Ordering::Relaxed);
        self.table.closed.notify_waiters();
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then lets connections finish
/// their requests in flight (callers bound that wait with their own grace period).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ListenerLimits,
    shutdown: impl Future<Output = ()> + Send,
) {
    let table = Arc::new(Connections::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut backoff = ACCEPT_BACKOFF_MIN;
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = ACCEPT_BACKOFF_MIN;
                match table.admit(peer.ip(), &limits) {
                    Some(admitted) => {
                        let conn = serve_connection(
                            stream,
                            peer,
                            app.clone(),
                            limits.clone(),
                            stop_rx.clone(),
                        );
                        tokio::spawn(async move {
                            conn.await;
                            drop(admitted);
                        });
                    }
                    None => refuse(stream, &table),
                }
            }
            Err(e) => {
                // EMFILE, ENFILE, ENOBUFS...: the listener stays; connections will close.
                tracing::warn!(error = %e, retry_ms = backoff.as_millis() as u64, "accept failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
            }
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    loop {
        let closed = table.closed.notified();
        if table.total.load(Ordering::Relaxed) == 0 {
            break;
        }
        closed.await;
    }
}

/// Answers 503 and closes, or just closes when too many refusals are in flight.
fn refuse(mut stream: TcpStream, table: &Arc<Connections>) {
    if table.refusing.fetch_add(1, Ordering::Relaxed) >= MAX_REFUSING {
        table.refusing.fetch_sub(1, Ordering::Relaxed);
        return;
    }
    let table = table.clone();
    tokio::spawn(async move {
        let _ = tokio::time::timeout(REFUSAL_WRITE_TIMEOUT, async {
            stream.write_all(OVERLOADED).await?;
            stream.shutdown().await
        })
        .await;
        table.refusing.fetch_sub(1, Ordering::Relaxed);
    });
}

/// Serves one connection; each request carries the peer's address as
/// `ConnectInfo<SocketAddr>` (a function URL's `sourceIp`).
async fn serve_connection(
    stream: TcpStream,
    peer: std::net::SocketAddr,
    app: Router,
    limits: ListenerLimits,
    mut stop: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Tracked {
        inner: stream,
        activity: activity.clone(),
    });
    let in_flight = activity.clone();
    let svc = TowerToHyperService::new(tower::service_fn(
        move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
            let app = app.clone();
            let guard = InFlight::enter(&in_flight);
            async move {
                let resp = tower::ServiceExt::oneshot(app, req).await;
                drop(guard);
                resp
            }
        },
    ));
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .keep_alive(true);
    let conn = builder.serve_connection(io, svc);
    tokio::pin!(conn);
    let check = (limits.idle_timeout / 4).max(Duration::from_millis(100));
    let mut stopping = *stop.borrow();
    if stopping {
        conn.as_mut().graceful_shutdown();
    }
    loop {
        tokio::select! {
            _ = conn.as_mut() => return,
            changed = stop.changed(), if !stopping => {
                stopping = true;
                if changed.is_ok() {
                    conn.as_mut().graceful_shutdown();
                }
            }
            _ = tokio::time::sleep(check) => {
                if activity.idle_for() >= limits.idle_timeout {
                    tracing::debug!("closing an idle connection");
                    return;
                }
            }
        }
    }
}

/// When a connection last moved bytes, and how many requests it has in flight.
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
    in_flight: AtomicUsize,
}

impl Activity {
    fn new() -> Self {
        Activity {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        }
    }

    fn touch(&self) {
        self.last_ms
            .store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// How long the connection has been idle; zero while a request is in flight (a
    /// function may run for 15 minutes without a byte on the wire).
    fn idle_for(&self) -> Duration {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return Duration::ZERO;
        }
        let now = self.start.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.last_ms.load(Ordering::Relaxed)))
    }
}

struct InFlight(Arc<Activity>);

impl InFlight {
    fn enter(activity: &Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A stream that records when bytes last moved.
struct Tracked {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_count_total_and_per_peer_and_free_on_drop() {
        let table = Arc::new(Connections::default());
        let limits = ListenerLimits {
            max_connections: 3,
            max_connections_per_peer: 2,
            ..ListenerLimits::default()
        };
        let a: IpAddr = [127, 0, 0, 1].into();
        let b: IpAddr = [127, 0, 0, 2].into();
        let a1 = table.admit(a, &limits).expect("first from a");
        let _a2 = table.admit(a, &limits).expect("second from a");
        assert!(
            table.admit(a, &limits).is_none(),
            "a is at its per-peer cap"
        );
        let _b1 = table.admit(b, &limits).expect("b has room");
        assert!(
            table.admit(b, &limits).is_none(),
            "the total cap is reached"
        );
        drop(a1);
        assert!(
            table.admit(b, &limits).is_some(),
            "a closed one, b may take it"
        );
    }

    #[test]
    fn overloaded_answer_is_a_well_formed_lambda_error() {
        let text = std::str::from_utf8(OVERLOADED).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let declared: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(declared, body.len());
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["Type"], "Service");
    }
}
