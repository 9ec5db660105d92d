//! The DNS resolver sandboxes with a network use: a forwarder on the resolver address
//! of the server's network block (port 53, UDP and TCP) that passes each query to the
//! host's own resolvers (the `nameserver` lines of the host's `/etc/resolv.conf`) and
//! the answer back. Sandboxes reach nothing else on the host; the egress policy lets
//! this address and port through.
//!
//! Bounded: queries in flight (in all and per sandbox address), TCP connections, message
//! sizes and the time an upstream may take. A query past a bound is dropped, as an
//! overloaded resolver would, and the client's resolver library retries.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

/// Queries forwarded at once, from all sandboxes.
const MAX_IN_FLIGHT: usize = 512;
/// Queries forwarded at once for one sandbox address: a function that floods its
/// resolver does not stop others' lookups.
const MAX_IN_FLIGHT_PER_SOURCE: usize = 32;
/// TCP connections open at once.
const MAX_TCP_CONNECTIONS: usize = 128;
/// How long one upstream may take to answer before the next is asked.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a TCP client may stay silent between queries.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// Largest UDP message taken (EDNS0's usual buffer size).
const MAX_UDP_MESSAGE: usize = 4096;
/// Shortest message that is a DNS query at all (its header).
const HEADER_LEN: usize = 12;

/// Where queries go: the host's resolvers.
#[derive(Debug, Clone)]
pub struct Upstreams(Vec<SocketAddr>);

impl Upstreams {
    /// The `nameserver` lines of a resolv.conf file (port 53 each).
    pub fn from_resolv_conf(path: &Path) -> io::Result<Upstreams> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| io::Error::new(e.kind(), format!("read {}: {e}", path.display())))?;
        let servers: Vec<SocketAddr> = text
            .lines()
            .filter_map(|line| {
                let mut words = line.split_whitespace();
                (words.next() == Some("nameserver")).then(|| words.next())?
            })
            .filter_map(|addr| addr.split('%').next()?.parse::<IpAddr>().ok())
            .map(|ip| SocketAddr::new(ip, 53))
            .collect();
        if servers.is_empty() {
            return Err(io::Error::other(format!(
                "{} names no nameserver for sandboxes' DNS queries",
                path.display()
            )));
        }
        Ok(Upstreams(servers))
    }

    pub fn new(servers: Vec<SocketAddr>) -> Upstreams {
        Upstreams(servers)
    }
}

/// What the forwarder has done, for `/metrics`.
#[derive(Debug, Default)]
pub struct DnsStats {
    pub forwarded: AtomicU64,
    /// Queries dropped at a bound or malformed.
    pub dropped: AtomicU64,
    /// Queries no upstream answered in time.
    pub failed: AtomicU64,
}

/// The running forwarder; it stops when this is dropped.
pub struct DnsForwarder {
    stats: Arc<DnsStats>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl DnsForwarder {
    /// Binds `addr:port` (UDP and TCP) and starts serving. Call within a tokio runtime.
    pub async fn start(
        addr: Ipv4Addr,
        port: u16,
        upstreams: Upstreams,
    ) -> io::Result<DnsForwarder> {
        let bind = SocketAddr::new(addr.into(), port);
        let udp = UdpSocket::bind(bind).await.map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("bind the DNS resolver on udp {bind}: {e}"),
            )
        })?;
        let tcp = TcpListener::bind(bind).await.map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("bind the DNS resolver on tcp {bind}: {e}"),
            )
        })?;
        let shared = Arc::new(Shared {
            upstreams,
            in_flight: Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT)),
            per_source: Mutex::new(HashMap::new()),
            stats: Arc::new(DnsStats::default()),
        });
        let stats = shared.stats.clone();
        let tasks = vec![
            tokio::spawn(serve_udp(Arc::new(udp), shared.clone())),
            tokio::spawn(serve_tcp(tcp, shared)),
        ];
        Ok(DnsForwarder { stats, tasks })
    }

    pub fn stats(&self) -> &Arc<DnsStats> {
        &self.stats
    }
}

impl Drop for DnsForwarder {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

struct Shared {
    upstreams: Upstreams,
    in_flight: Arc<tokio::sync::Semaphore>,
    per_source: Mutex<HashMap<IpAddr, usize>>,
    stats: Arc<DnsStats>,
}

/// One query's place under the bounds; given back on drop.
struct Slot {
    shared: Arc<Shared>,
    source: IpAddr,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Shared {
    fn slot(self: &Arc<Self>, source: IpAddr) -> Option<Slot> {
        let permit = self.in_flight.clone().try_acquire_owned().ok()?;
        let mut per_source = self.per_source.lock().unwrap_or_else(|e| e.into_inner());
        let n = per_source.entry(source).or_insert(0);
        if *n >= MAX_IN_FLIGHT_PER_SOURCE {
            return None;
        }
        *n += 1;
        Some(Slot {
            shared: self.clone(),
            source,
            _permit: permit,
        })
    }

    fn drop_query(&self) {
        self.stats.dropped.fetch_add(1, Ordering::Relaxed);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut per_source = self
            .shared
            .per_source
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(n) = per_source.get_mut(&self.source) {
            *n -= 1;
            if *n == 0 {
                per_source.remove(&self.source);
            }
        }
    }
}

async fn serve_udp(socket: Arc<UdpSocket>, shared: Arc<Shared>) {
    let mut buf = vec![0u8; MAX_UDP_MESSAGE];
    loop {
        let (len, client) = match socket.recv_from(&mut buf).await {
            Ok(got) => got,
            Err(e) => {
                tracing::debug!(error = %e, "DNS resolver: receive failed");
                continue;
            }
        };
        if len < HEADER_LEN {
            shared.drop_query();
            continue;
        }
        let Some(slot) = shared.slot(client.ip()) else {
            shared.drop_query();
            continue;
        };
        let query = buf[..len].to_vec();
        let socket = socket.clone();
        tokio::spawn(async move {
            let shared = slot.shared.clone();
            match forward_udp(&shared.upstreams, &query).await {
                Some(answer) => {
                    shared.stats.forwarded.fetch_add(1, Ordering::Relaxed);
                    let _ = socket.send_to(&answer, client).await;
                }
                None => {
                    shared.stats.failed.fetch_add(1, Ordering::Relaxed);
                }
            }
            drop(slot);
        });
    }
}

/// Asks each upstream in turn until one answers the query (same id).
async fn forward_udp(upstreams: &Upstreams, query: &[u8]) -> Option<Vec<u8>> {
    for upstream in &upstreams.0 {
        let local: SocketAddr = match upstream {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let Ok(socket) = UdpSocket::bind(local).await else {
            continue;
        };
        if socket.connect(upstream).await.is_err() || socket.send(query).await.is_err() {
            continue;
        }
        let mut answer = vec![0u8; 65_535];
        let got = tokio::time::timeout(UPSTREAM_TIMEOUT, async {
            loop {
                match socket.recv(&mut answer).await {
                    Ok(n) if n >= HEADER_LEN && answer[..2] == query[..2] => return Some(n),
                    Ok(_) => continue,
                    Err(_) => return None,
                }
            }
        })
        .await;
        if let Ok(Some(n)) = got {
            answer.truncate(n);
            return Some(answer);
        }
    }
    None
}

async fn serve_tcp(listener: TcpListener, shared: Arc<Shared>) {
    let connections = Arc::new(tokio::sync::Semaphore::new(MAX_TCP_CONNECTIONS));
    loop {
        let Ok((stream, client)) = listener.accept().await else {
            continue;
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            shared.drop_query();
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            serve_tcp_client(stream, client.ip(), &shared).await;
            drop(permit);
        });
    }
}

/// Answers the length-prefixed queries of one TCP client in turn.
async fn serve_tcp_client(mut stream: TcpStream, client: IpAddr, shared: &Arc<Shared>) {
    loop {
        let query = match tokio::time::timeout(TCP_IDLE, read_tcp_message(&mut stream)).await {
            Ok(Ok(Some(query))) if query.len() >= HEADER_LEN => query,
            Ok(Ok(Some(_))) => {
                shared.drop_query();
                return;
            }
            _ => return,
        };
        let Some(slot) = shared.slot(client) else {
            shared.drop_query();
            return;
        };
        let answer = forward_tcp(&shared.upstreams, &query).await;
        drop(slot);
        let Some(answer) = answer else {
            shared.stats.failed.fetch_add(1, Ordering::Relaxed);
            return;
        };
        shared.stats.forwarded.fetch_add(1, Ordering::Relaxed);
        if write_tcp_message(&mut stream, &answer).await.is_err() {
            return;
        }
    }
}

async fn forward_tcp(upstreams: &Upstreams, query: &[u8]) -> Option<Vec<u8>> {
    for upstream in &upstreams.0 {
        let asked = tokio::time::timeout(UPSTREAM_TIMEOUT, async {
            let mut stream = TcpStream::connect(upstream).await.ok()?;
            write_tcp_message(&mut stream, query).await.ok()?;
            read_tcp_message(&mut stream).await.ok()?
        })
        .await;
        if let Ok(Some(answer)) = asked {
            if answer.len() >= HEADER_LEN && answer[..2] == query[..2] {
                return Some(answer);
            }
        }
    }
    None
}

/// One message with its two-byte length prefix (RFC 1035 4.2.2); `None` at end of
/// stream.
async fn read_tcp_message(stream: &mut TcpStream) -> io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 2];
    match stream.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let mut message = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut message).await?;
    Ok(Some(message))
}

async fn write_tcp_message(stream: &mut TcpStream, message: &[u8]) -> io::Result<()> {
    let len = u16::try_from(message.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "DNS message over 64 KB"))?;
    let mut framed = Vec::with_capacity(message.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(message);
    stream.write_all(&framed).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake upstream: answers every query with the query itself, flags turned into
    /// a response, so the test can tell an answer came through.
    async fn echo_upstream() -> SocketAddr {
        // A port free for both UDP and TCP.
        let (socket, listener) = loop {
            let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
            let addr = socket.local_addr().expect("addr");
            if let Ok(listener) = TcpListener::bind(addr).await {
                break (socket, listener);
            }
        };
        let addr = socket.local_addr().expect("addr");
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while let Ok((n, from)) = socket.recv_from(&mut buf).await {
                let mut answer = buf[..n].to_vec();
                answer[2] |= 0x80;
                let _ = socket.send_to(&answer, from).await;
            }
        });
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    while let Ok(Some(mut q)) = read_tcp_message(&mut stream).await {
                        q[2] |= 0x80;
                        if write_tcp_message(&mut stream, &q).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    }

    fn query(id: u16) -> Vec<u8> {
        let mut q = vec![0u8; HEADER_LEN];
        q[..2].copy_from_slice(&id.to_be_bytes());
        q[5] = 1;
        q.extend_from_slice(b"\x07example\x03com\x00\x00\x01\x00\x01");
        q
    }

    async fn forwarder(upstreams: Vec<SocketAddr>) -> (DnsForwarder, SocketAddr) {
        // Port 0 is not possible for both protocols at once: find a port free for both.
        for _ in 0..20 {
            let probe = std::net::UdpSocket::bind("127.0.0.1:0").expect("probe");
            let port = probe.local_addr().expect("addr").port();
            drop(probe);
            if let Ok(f) =
                DnsForwarder::start(Ipv4Addr::LOCALHOST, port, Upstreams::new(upstreams.clone()))
                    .await
            {
                return (f, SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
            }
        }
        panic!("no port free for both UDP and TCP");
    }

    #[tokio::test]
    async fn udp_and_tcp_queries_get_the_upstreams_answer() {
        let upstream = echo_upstream().await;
        let (f, addr) = forwarder(vec![upstream]).await;
        let client = UdpSocket::bind("127.0.0.1:0").await.expect("client");
        client.send_to(&query(0x1234), addr).await.expect("send");
        let mut buf = [0u8; 512];
        let n = tokio::time::timeout(Duration::from_secs(5), client.recv(&mut buf))
            .await
            .expect("answered in time")
            .expect("recv");
        assert_eq!(&buf[..2], &[0x12, 0x34]);
        assert_eq!(buf[2] & 0x80, 0x80, "the upstream's answer came back");
        assert_eq!(n, query(0).len());

        let mut stream = TcpStream::connect(addr).await.expect("connect");
        for id in [7u16, 8] {
            write_tcp_message(&mut stream, &query(id))
                .await
                .expect("write");
            let answer = read_tcp_message(&mut stream)
                .await
                .expect("read")
                .expect("answer");
            assert_eq!(&answer[..2], &id.to_be_bytes());
        }
        assert_eq!(f.stats().forwarded.load(Ordering::Relaxed), 3);
    }

    #[tokio::test]
    async fn a_dead_upstream_is_skipped_and_garbage_is_dropped() {
        // Nothing answers on this one (a bound socket that never reads).
        let dead = std::net::UdpSocket::bind("127.0.0.1:0").expect("dead");
        let upstream = echo_upstream().await;
        let (f, addr) = forwarder(vec![dead.local_addr().expect("addr"), upstream]).await;
        let client = UdpSocket::bind("127.0.0.1:0").await.expect("client");
        client.send_to(b"short", addr).await.expect("send garbage");
        client.send_to(&query(9), addr).await.expect("send");
        let mut buf = [0u8; 512];
        tokio::time::timeout(Duration::from_secs(10), client.recv(&mut buf))
            .await
            .expect("answered by the second upstream")
            .expect("recv");
        assert_eq!(&buf[..2], &9u16.to_be_bytes());
        assert_eq!(f.stats().dropped.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn resolv_conf_nameservers_are_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("resolv.conf");
        std::fs::write(
            &path,
            "# comment\nsearch example.com\nnameserver 192.0.2.53\nnameserver fe80::1%eth0\noptions edns0\n",
        )
        .expect("write");
        let u = Upstreams::from_resolv_conf(&path).expect("read");
        assert_eq!(u.0.len(), 2);
        assert_eq!(u.0[0], "192.0.2.53:53".parse().expect("addr"));
        std::fs::write(&path, "search example.com\n").expect("write");
        assert!(Upstreams::from_resolv_conf(&path).is_err());
    }
}
