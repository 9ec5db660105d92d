//! Test hosts for the networking tests: a network namespace ("the world") joined to the
//! host by a veth pair, holding addresses from the documentation range 198.51.100.0/24
//! (a public "internet" host and a DNS server), a private-range host (10.199.0.10) and
//! the cloud metadata address (169.254.169.254, routed to it for the test's lifetime).
//! Each runs a small HTTP server on port 8080; the DNS server answers
//! `inet.tern.test` with the internet host's address. No traffic leaves this machine.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const INTERNET: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
pub const RESOLVER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 53);
pub const PRIVATE: Ipv4Addr = Ipv4Addr::new(10, 199, 0, 10);
pub const METADATA: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);
/// The host's own address on the link to the world.
pub const HOST_SIDE: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
/// The name the world's DNS server answers.
pub const NAME: &str = "inet.tern.test";
pub const HTTP_PORT: u16 = 8080;
/// Where the internet host reads and discards what it is sent.
pub const SINK_PORT: u16 = 9000;
/// A second port the private host serves on.
pub const OTHER_PORT: u16 = 8081;

/// What the world's hosts run: an HTTP server saying which address it was reached on,
/// and a DNS server for [`NAME`].
const SERVICES: &str = r#"
import socket, socketserver, struct, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Hello(BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("hello from " + self.server.server_address[0]).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass

class Server(ThreadingHTTPServer):
    def server_bind(self):
        # Not HTTPServer's, which looks its address up in DNS (getfqdn).
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

def http(addr, port=8080):
    Server((addr, port), Hello).serve_forever()

def dns(addr, answer):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((addr, 53))
    while True:
        q, peer = s.recvfrom(4096)
        if len(q) < 12:
            continue
        i, labels = 12, []
        while q[i]:
            labels.append(q[i + 1:i + 1 + q[i]].decode().lower())
            i += 1 + q[i]
        qtype = struct.unpack(">H", q[i + 1:i + 3])[0]
        question = q[12:i + 5]
        found = ".".join(labels) == sys.argv[2] and qtype == 1
        flags = 0x8180 if found else 0x8183
        head = q[:2] + struct.pack(">HHHHH", flags, 1, 1 if found else 0, 0, 0)
        rr = (b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + socket.inet_aton(answer)) if found else b""
        s.sendto(head + question + rr, peer)

for addr in sys.argv[3:]:
    threading.Thread(target=http, args=(addr,), daemon=True).start()
def sink(addr, port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port))
    s.listen(64)
    def drain(c):
        while c.recv(1 << 20):
            pass
        c.close()
    while True:
        c, _ = s.accept()
        threading.Thread(target=drain, args=(c,), daemon=True).start()

# A sink on the internet host that reads and discards what it is sent.
threading.Thread(target=sink, args=(sys.argv[3], 9000), daemon=True).start()
# A second port on the private host: a network's allow-list can grant one and not the
# other.
threading.Thread(target=http, args=(sys.argv[4], 8081), daemon=True).start()
threading.Thread(target=dns, args=(sys.argv[1], sys.argv[3]), daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
"#;

static SHARED: std::sync::Mutex<Option<std::sync::Arc<World>>> = std::sync::Mutex::new(None);

/// A test's hold on the shared [`World`]. The last one to go removes it, under the same
/// lock as [`World::shared`], so that a test starting meanwhile builds a fresh one only
/// once this one is gone.
pub struct Shared(Option<std::sync::Arc<World>>);

impl std::ops::Deref for Shared {
    type Target = World;

    fn deref(&self) -> &World {
        self.0.as_ref().expect("held until drop")
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
        let ours = self.0.take();
        // Ours and the registry's: nobody else holds it.
        if ours.as_ref().map(std::sync::Arc::strong_count) == Some(2) {
            shared.take();
        }
        drop(ours);
    }
}

/// The world namespace and its services; removed on drop.
pub struct World {
    ns: String,
    host_if: String,
    services: Child,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl World {
    /// The world, shared by the tests that run at once (there is one per machine: its
    /// addresses are fixed); it goes when the last of them lets go.
    pub fn shared() -> Shared {
        let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
        let world = shared
            .get_or_insert_with(|| std::sync::Arc::new(World::start()))
            .clone();
        Shared(Some(world))
    }

    /// Builds the world (removing one a crashed run left). Needs root; panics (never
    /// skips) without it.
    fn start() -> World {
        assert!(
            nix::unistd::Uid::effective().is_root(),
            "the networking tests build network namespaces: run them as root"
        );
        let ns = "tern-test-world".to_string();
        let host_if = "tern-test-wh".to_string();
        let _ = Command::new("ip").args(["netns", "del", &ns]).output();
        let _ = Command::new("ip").args(["link", "del", &host_if]).output();
        ip(&["netns", "add", &ns]);
        let world = |args: &[&str]| {
            let mut full = vec!["netns", "exec", &ns, "ip"];
            full.extend_from_slice(args);
            ip(&full);
        };
        ip(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", "eth0", "netns", &ns,
        ]);
        ip(&["addr", "add", &format!("{HOST_SIDE}/24"), "dev", &host_if]);
        ip(&["addr", "add", "10.199.0.1/24", "dev", &host_if]);
        ip(&["link", "set", &host_if, "up"]);
        ip(&["route", "add", &format!("{METADATA}/32"), "dev", &host_if]);
        world(&["link", "set", "lo", "up"]);
        for addr in [INTERNET, RESOLVER] {
            world(&["addr", "add", &format!("{addr}/24"), "dev", "eth0"]);
        }
        world(&["addr", "add", &format!("{PRIVATE}/24"), "dev", "eth0"]);
        world(&["addr", "add", &format!("{METADATA}/32"), "dev", "eth0"]);
        world(&["link", "set", "eth0", "up"]);
        // No default route: the world answers what reaches it (the host, and sandboxes
        // masqueraded to the host's address, both on its link) and sends nothing else
        // anywhere.
        let mut services = Command::new("ip")
            .args(["netns", "exec", &ns, "python3", "-c", SERVICES])
            .arg(RESOLVER.to_string())
            .arg(NAME)
            .args([INTERNET, PRIVATE, METADATA].map(|a| a.to_string()))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the world's services");
        let mut ready = String::new();
        use std::io::BufRead;
        std::io::BufReader::new(services.stdout.take().expect("stdout"))
            .read_line(&mut ready)
            .expect("services ready");
        assert_eq!(ready.trim(), "ready");
        let world = World {
            ns,
            host_if,
            services,
        };
        // The host reaches each test host: a refusal seen from a sandbox is the policy's.
        for addr in [INTERNET, PRIVATE, METADATA] {
            world.wait_reachable(addr);
        }
        world
    }

    fn wait_reachable(&self, addr: Ipv4Addr) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let target = SocketAddr::from((addr, HTTP_PORT));
        while let Err(e) = TcpStream::connect_timeout(&target, Duration::from_secs(1)) {
            if Instant::now() >= deadline {
                let show = |args: &[&str]| {
                    let out = Command::new("ip").args(args).output().expect("ip");
                    String::from_utf8_lossy(&out.stdout).into_owned()
                };
                panic!(
                    "test host {target} never answered ({e}); host route:\n{}\nworld addresses:\n{}\nworld sockets:\n{}",
                    show(&["route", "get", &addr.to_string()]),
                    show(&["netns", "exec", &self.ns, "ip", "-br", "addr"]),
                    show(&["netns", "exec", &self.ns, "ss", "-ltn"]),
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A resolv.conf naming the world's DNS server.
    pub fn resolv_conf(&self, dir: &std::path::Path) -> std::path::PathBuf {
        let path = dir.join("resolv.conf");
        std::fs::write(&path, format!("nameserver {RESOLVER}\n")).expect("resolv.conf");
        path
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = self.services.kill();
        let _ = self.services.wait();
        let _ = Command::new("ip")
            .args([
                "route",
                "del",
                &format!("{METADATA}/32"),
                "dev",
                &self.host_if,
            ])
            .output();
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .output();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
    }
}
