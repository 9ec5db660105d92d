//! The network section's test host ("the world"): a network namespace joined to the host
//! by a veth pair, with addresses from the documentation range 203.0.113.0/24 (the
//! tests' world uses 198.51.100.0/24, so both can exist at once). Its services are
//! threads of this process whose listening sockets were opened inside the namespace
//! (from a short-lived thread that joined it with setns): a TCP sink, a keep-alive
//! HTTP/1.1 server and, on request, a server that holds connections. Nothing is sent to
//! any other address: servers started for the section resolve names through a
//! resolv.conf naming the world, where no DNS server listens.
//!
//! The namespace and the link are removed on drop, and those a crashed earlier run left
//! are removed first.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};

/// The network namespace and the host end of its link.
pub const NETNS: &str = "tern-bench-world";
const HOST_LINK: &str = "tern-bench-wh";
/// The host's address on the link, and the world's.
pub const HOST_SIDE: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
pub const WORLD: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
/// Reads and discards a connection, then answers the byte count (8 bytes, big endian).
pub const SINK_PORT: u16 = 5001;
/// Answers every GET with [`HTTP_RESPONSE`], keeping the connection.
pub const HTTP_PORT: u16 = 8080;
/// Where [`World::hold`] listens.
pub const HOLD_PORT: u16 = 5002;
const HTTP_RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok";
/// The sink's read buffer.
const SINK_BUFFER: usize = 4 << 20;
/// The byte a held connection gets when released.
pub const RELEASE: &[u8] = b"g";

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("cannot run ip (iproute2)")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Removes the namespace and the link (a leftover, or ours).
fn remove() {
    for args in [["link", "del", HOST_LINK], ["netns", "del", NETNS]] {
        let _ = Command::new("ip").args(args).output();
    }
}

/// A listening socket in the world namespace. Only the thread that opens it joins the
/// namespace; what it accepts belongs to the namespace wherever it is read.
fn listen_in_world(port: u16) -> anyhow::Result<TcpListener> {
    std::thread::spawn(move || {
        let ns = std::fs::File::open(format!("/run/netns/{NETNS}"))
            .with_context(|| format!("cannot open network namespace {NETNS}"))?;
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
            .with_context(|| format!("cannot join network namespace {NETNS}"))?;
        TcpListener::bind(SocketAddrV4::new(WORLD, port))
            .with_context(|| format!("cannot listen on {WORLD}:{port} in the world"))
    })
    .join()
    .map_err(|_| anyhow!("the thread joining the world namespace panicked"))?
}

/// One service of the world: its accept loop, stopped on drop.
pub struct Service {
    addr: SocketAddrV4,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl Service {
    /// Serves each connection to `port` on a thread of its own with `on_connection`.
    fn start(
        port: u16,
        on_connection: impl Fn(TcpStream) + Send + Sync + 'static,
    ) -> anyhow::Result<Service> {
        let listener = listen_in_world(port)?;
        let stop = Arc::new(AtomicBool::new(false));
        let on_connection = Arc::new(on_connection);
        let accept = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::Acquire) {
                        break;
                    }
                    if let Ok(conn) = conn {
                        let serve = on_connection.clone();
                        std::thread::spawn(move || serve(conn));
                    }
                }
            })
        };
        Ok(Service {
            addr: SocketAddrV4::new(WORLD, port),
            stop,
            accept: Some(accept),
        })
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // Wakes the accept loop, which sees the flag.
        let _ = TcpStream::connect_timeout(&SocketAddr::V4(self.addr), Duration::from_secs(1));
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

fn sink(mut conn: TcpStream) {
    let mut buf = vec![0u8; SINK_BUFFER];
    let mut total: u64 = 0;
    loop {
        match conn.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => total += n as u64,
            Err(_) => return,
        }
    }
    let _ = conn.write_all(&total.to_be_bytes());
}

/// Keep-alive HTTP/1.1 without bodies: one fixed response per request head.
fn http(mut conn: TcpStream) {
    let _ = conn.set_nodelay(true);
    let mut buf = [0u8; 8192];
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let n = match conn.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        pending.extend_from_slice(&buf[..n]);
        while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            pending.drain(..end + 4);
            if conn.write_all(HTTP_RESPONSE).is_err() {
                return;
            }
        }
    }
}

/// Connections held by [`World::hold`] until released.
#[derive(Default)]
struct Held {
    streams: Vec<TcpStream>,
    accepted_at: Vec<Instant>,
    released: bool,
}

/// A server that holds every connection it accepts until [`Hold::release`].
pub struct Hold {
    held: Arc<(Mutex<Held>, Condvar)>,
    _service: Service,
}

impl Hold {
    /// Waits until `n` connections are held or `deadline` passes; returns how many are
    /// held and when each was accepted.
    pub fn wait_for(&self, n: usize, deadline: Instant) -> Vec<Instant> {
        let (lock, cv) = &*self.held;
        let mut held = lock.lock().unwrap_or_else(|e| e.into_inner());
        while held.streams.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            held = cv
                .wait_timeout(held, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        held.accepted_at.clone()
    }

    /// Sends [`RELEASE`] on every held connection, and at once on later ones.
    pub fn release(&self) {
        let mut held = self.held.0.lock().unwrap_or_else(|e| e.into_inner());
        held.released = true;
        for mut s in held.streams.drain(..) {
            let _ = s.write_all(RELEASE);
        }
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.release();
    }
}

/// The world namespace and its sink and HTTP services; removed on drop.
pub struct World {
    dir: tempfile::TempDir,
    services: Vec<Service>,
}

impl World {
    /// Builds the world, removing one a crashed run left first, and starts its sink and
    /// HTTP server.
    pub fn start() -> anyhow::Result<World> {
        remove();
        let dir = tempfile::Builder::new()
            .prefix("tern-bench-world-")
            .tempdir()?;
        std::fs::write(
            dir.path().join("resolv.conf"),
            format!("nameserver {WORLD}\n"),
        )?;
        let mut world = World {
            dir,
            services: Vec::new(),
        };
        let inside = |args: &[&str]| {
            let mut full = vec!["netns", "exec", NETNS, "ip"];
            full.extend_from_slice(args);
            ip(&full)
        };
        ip(&["netns", "add", NETNS])?;
        ip(&[
            "link", "add", HOST_LINK, "type", "veth", "peer", "name", "eth0", "netns", NETNS,
        ])?;
        ip(&["addr", "add", &format!("{HOST_SIDE}/24"), "dev", HOST_LINK])?;
        ip(&["link", "set", HOST_LINK, "up"])?;
        inside(&["link", "set", "lo", "up"])?;
        inside(&["addr", "add", &format!("{WORLD}/24"), "dev", "eth0"])?;
        inside(&["link", "set", "eth0", "up"])?;
        world.services.push(Service::start(SINK_PORT, sink)?);
        world.services.push(Service::start(HTTP_PORT, http)?);
        world.wait_reachable(HTTP_PORT)?;
        Ok(world)
    }

    fn wait_reachable(&self, port: u16) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let target = SocketAddr::from((WORLD, port));
        while TcpStream::connect_timeout(&target, Duration::from_secs(1)).is_err() {
            if Instant::now() >= deadline {
                bail!("the world's {target} never answered from the host");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// A resolv.conf naming the world (where no DNS server listens), for the servers'
    /// DNS forwarders: no query a sandbox might make leaves the machine.
    pub fn resolv_conf(&self) -> PathBuf {
        self.dir.path().join("resolv.conf")
    }

    /// Starts the holding server on [`HOLD_PORT`]; it stops when dropped.
    pub fn hold(&self) -> anyhow::Result<Hold> {
        let held: Arc<(Mutex<Held>, Condvar)> = Arc::default();
        let service = {
            let held = held.clone();
            Service::start(HOLD_PORT, move |mut conn| {
                let (lock, cv) = &*held;
                let mut h = lock.lock().unwrap_or_else(|e| e.into_inner());
                h.accepted_at.push(Instant::now());
                if h.released {
                    let _ = conn.write_all(RELEASE);
                } else {
                    h.streams.push(conn);
                    cv.notify_all();
                }
            })?
        };
        Ok(Hold {
            held,
            _service: service,
        })
    }
}

impl Drop for World {
    fn drop(&mut self) {
        self.services.clear();
        remove();
    }
}
