//! The end-to-end tests build real namespaces and veths and need root (CI runs as root);
//! without it they fail, they never skip.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use nix::sched::{setns, CloneFlags};
use nix::sys::socket::{setsockopt, sockopt};

use super::expr::{limit_bytes_over, Expr};
use super::limits::{check_bandwidth, FN_CONNS_SET, MAX_BANDWIDTH};
use super::*;

/// A refusal arrives within this; a dropped SYN would take a second or more.
const FAST: Duration = Duration::from_millis(500);
const PATIENCE: Duration = Duration::from_secs(3);

fn default_deny() -> Vec<(Ipv4Addr, u8)> {
    [
        ("0.0.0.0", 8),
        ("10.0.0.0", 8),
        ("100.64.0.0", 10),
        ("127.0.0.0", 8),
        ("169.254.0.0", 16),
        ("172.16.0.0", 12),
        ("192.0.0.0", 24),
        ("192.168.0.0", 16),
        ("198.18.0.0", 15),
        ("224.0.0.0", 4),
        ("240.0.0.0", 4),
    ]
    .iter()
    .map(|&(a, l)| (a.parse().expect("address"), l))
    .collect()
}

/// One test's world: sandboxes (netns + veth `<prefix><n>`), an "internet" host and a
/// "private" host (netns behind a veth, no route back to the sandboxes: only
/// masquerading gets replies home), a resolver address, and the table.
/// Names carry the pid and `k`, addresses `k`, so tests run in parallel. Dropping it
/// removes everything it made, whether the test passed or not.
struct Lab {
    k: u8,
    tag: String,
    spec: FirewallSpec,
    namespaces: Vec<String>,
    links: Vec<String>,
}

impl Lab {
    fn new(k: u8) -> Lab {
        std::fs::write("/proc/sys/net/ipv4/ip_forward", "1").expect("enable ip_forward");
        Lab {
            k,
            spec: spec(k),
            tag: tag(k),
            namespaces: Vec::new(),
            links: Vec::new(),
        }
    }

    fn table(&self) -> &str {
        &self.spec.table
    }

    fn iface(&self, n: u8) -> String {
        format!("{}{n}", self.spec.iface_prefix)
    }

    /// Host end and sandbox end of sandbox `n`'s /31.
    fn sandbox_addrs(&self, n: u8) -> (Ipv4Addr, Ipv4Addr) {
        let [a, b, c, _] = self.spec.block.0.octets();
        (
            Ipv4Addr::new(a, b, c, 2 + 2 * n),
            Ipv4Addr::new(a, b, c, 3 + 2 * n),
        )
    }

    fn internet_addrs(&self) -> (Ipv4Addr, Ipv4Addr) {
        (
            Ipv4Addr::new(198, 51, 100, 8 * self.k + 1),
            Ipv4Addr::new(198, 51, 100, 8 * self.k + 2),
        )
    }

    fn private_addrs(&self) -> (Ipv4Addr, Ipv4Addr) {
        let third = self.spec.block.0.octets()[2];
        (
            Ipv4Addr::new(10, 254, third, 1),
            Ipv4Addr::new(10, 254, third, 2),
        )
    }

    fn netns(&mut self, name: &str) -> String {
        let ns = format!("{}-{name}", self.table());
        ip(&["netns", "add", &ns]);
        self.namespaces.push(ns.clone());
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        ns
    }

    /// A veth from the host (`host_if`, `host`/len) to `eth0` (`peer`/len) in `ns`.
    fn veth(&mut self, host_if: &str, ns: &str, host: Ipv4Addr, peer: Ipv4Addr, len: u8) {
        ip(&[
            "link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", ns,
        ]);
        self.links.push(host_if.to_string());
        ip(&["addr", "add", &format!("{host}/{len}"), "dev", host_if]);
        ip(&["link", "set", host_if, "up"]);
        ip(&[
            "-n",
            ns,
            "addr",
            "add",
            &format!("{peer}/{len}"),
            "dev",
            "eth0",
        ]);
        ip(&["-n", ns, "link", "set", "eth0", "up"]);
    }

    /// Sandbox `n`: its namespace, default route through the host end.
    fn sandbox(&mut self, n: u8) -> String {
        let ns = self.netns(&format!("s{n}"));
        let (host, inside) = self.sandbox_addrs(n);
        self.veth(&self.iface(n), &ns, host, inside, 31);
        ip(&[
            "-n",
            &ns,
            "route",
            "add",
            "default",
            "via",
            &host.to_string(),
        ]);
        ns
    }

    fn internet(&mut self) -> String {
        let ns = self.netns("inet");
        let (host, peer) = self.internet_addrs();
        self.veth(&format!("ty{}i", self.tag), &ns, host, peer, 29);
        ns
    }

    fn private(&mut self) -> String {
        let ns = self.netns("priv");
        let (host, peer) = self.private_addrs();
        self.veth(&format!("ty{}p", self.tag), &ns, host, peer, 24);
        ns
    }

    /// The resolver's address, on the internet link's host end (any host address does;
    /// not every kernel has dummy links).
    fn resolver(&mut self) {
        let link = format!("ty{}i", self.tag);
        ip(&[
            "addr",
            "add",
            &format!("{}/32", self.spec.resolver),
            "dev",
            &link,
        ]);
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for link in &self.links {
            let _ = Command::new("ip").args(["link", "del", link]).output();
        }
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
        if let Err(e) = remove(&self.spec.table) {
            eprintln!("cleanup: {e}");
        }
    }
}

/// Test `k`'s name tag: the pid in base 36, then `k`.
fn tag(k: u8) -> String {
    format!("{}{k}", base36(std::process::id()))
}

/// Test `k`'s spec, `k` < 16.
fn spec(k: u8) -> FirewallSpec {
    let pid = std::process::id();
    let third = ((pid % 16) * 16 + u32::from(k)) as u8;
    FirewallSpec {
        table: format!("tern-test-{pid}-{k}"),
        iface_prefix: format!("tz{}x", tag(k)),
        block: (Ipv4Addr::new(100, 96, third, 0), 24),
        resolver: Ipv4Addr::new(203, 0, 113, 16 * k + 1),
        deny: default_deny(),
        api_port: None,
    }
}

fn base36(mut n: u32) -> String {
    let mut digits = Vec::new();
    loop {
        digits.push(char::from_digit(n % 36, 36).expect("a base-36 digit"));
        n /= 36;
        if n == 0 {
            return digits.iter().rev().collect();
        }
    }
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

/// Runs `f` on a thread inside network namespace `ns`; sockets it makes stay there.
fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    let handle = File::open(format!("/run/netns/{ns}")).expect("open the netns");
    thread::scope(|s| {
        s.spawn(move || {
            setns(&handle, CloneFlags::CLONE_NEWNET).expect("setns");
            f()
        })
        .join()
        .expect("the thread in the netns panicked")
    })
}

fn listen(ns: Option<&str>, addr: Ipv4Addr) -> (TcpListener, SocketAddrV4) {
    let bind = move || TcpListener::bind((addr, 0)).expect("listen");
    let listener = match ns {
        Some(ns) => in_netns(ns, bind),
        None => bind(),
    };
    let port = listener.local_addr().expect("local address").port();
    (listener, SocketAddrV4::new(addr, port))
}

fn connect(ns: &str, to: SocketAddrV4) -> (io::Result<TcpStream>, Duration) {
    in_netns(ns, || {
        let start = Instant::now();
        let result = TcpStream::connect_timeout(&to.into(), PATIENCE);
        (result, start.elapsed())
    })
}

fn assert_connects(ns: &str, to: SocketAddrV4, what: &str) {
    if let (Err(e), took) = connect(ns, to) {
        panic!("{what} ({to}) from {ns}: {e} after {took:?}, expected a connection");
    }
}

fn assert_refused(ns: &str, to: SocketAddrV4, what: &str) {
    match connect(ns, to) {
        (Ok(_), _) => panic!("{what} ({to}) from {ns}: connected, expected a refusal"),
        (Err(e), took) => {
            assert_eq!(
                e.kind(),
                io::ErrorKind::ConnectionRefused,
                "{what} ({to}): {e}"
            );
            assert!(took < FAST, "{what} ({to}): refused only after {took:?}");
        }
    }
}

/// A datagram from `ns`; the error the next receive gets, and how fast.
fn udp_error(ns: &str, to: SocketAddrV4) -> (io::Error, Duration) {
    in_netns(ns, || {
        let socket = UdpSocket::bind("0.0.0.0:0").expect("udp bind");
        socket.connect(to).expect("udp connect");
        socket.set_read_timeout(Some(PATIENCE)).expect("timeout");
        let start = Instant::now();
        socket.send(b"x").expect("udp send");
        let error = socket.recv(&mut [0; 16]).expect_err("a refusal");
        (error, start.elapsed())
    })
}

/// Sends one datagram from `from` inside `ns` and returns who `receiver` saw sending it.
fn udp_delivery(ns: &str, from: Ipv4Addr, receiver: &UdpSocket) -> Option<IpAddr> {
    let to = receiver.local_addr().expect("receiver address");
    in_netns(ns, || {
        let socket = UdpSocket::bind((from, 0)).expect("udp bind");
        socket.send_to(b"x", to).expect("udp send");
    });
    receiver
        .set_read_timeout(Some(FAST))
        .expect("receiver timeout");
    let mut buf = [0; 16];
    receiver.recv_from(&mut buf).ok().map(|(_, peer)| peer.ip())
}

fn counter_rules(table_name: &str) -> usize {
    let mut socket = NftSocket::open().expect("open a netlink socket");
    refusal_rules(&mut socket, table_name)
        .expect("list rules")
        .len()
}

#[test]
fn install_is_idempotent_and_remove_leaves_no_table() {
    let lab = Lab::new(0);
    let (table_name, iface) = (lab.table(), lab.iface(0));
    install(&lab.spec).expect("install");
    install(&lab.spec).expect("install again");
    assert_eq!(tables(table_name).expect("tables"), [table_name]);

    admit(table_name, &iface, true).expect("admit");
    admit(table_name, &iface, true).expect("admit again");
    assert_eq!(counter_rules(table_name), 1, "one counter per interface");
    assert_eq!(refusals(table_name, &iface).expect("refusals"), 0);

    install(&lab.spec).expect("reinstall");
    assert_eq!(counter_rules(table_name), 0, "a reinstall starts empty");
    let missing = refusals(table_name, &iface).expect_err("no counter after reinstall");
    assert_eq!(missing.kind(), io::ErrorKind::NotFound);

    remove(table_name).expect("remove");
    assert!(tables(table_name).expect("tables").is_empty());
    remove(table_name).expect("removing an absent table is fine");
    assert!(all_refusals(table_name)
        .expect("no table, no counts")
        .is_empty());
    assert_eq!(
        forget(table_name, &iface).expect("forget without a table"),
        0
    );
}

#[test]
fn errors_name_what_failed() {
    let lab = Lab::new(1);
    let error = admit(lab.table(), &lab.iface(0), true).expect_err("no table yet");
    assert_eq!(error.kind(), io::ErrorKind::NotFound);
    let message = error.to_string();
    assert!(message.starts_with("nftables: add "), "{message}");
    assert!(message.contains(lab.table()), "{message}");

    let mut spec = lab.spec.clone();
    spec.iface_prefix = "much-too-long-prefix".into();
    let error = install(&spec).expect_err("a prefix leaving no room");
    assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
    assert!(
        error.to_string().contains("much-too-long-prefix"),
        "{error}"
    );
}

#[test]
fn egress_reaches_the_internet_masqueraded_and_is_refused_at_once_elsewhere() {
    let mut lab = Lab::new(2);
    let s0 = lab.sandbox(0);
    let s1 = lab.sandbox(1);
    let inet = lab.internet();
    let private = lab.private();
    lab.resolver();
    install(&lab.spec).expect("install");
    let (table_name, if0, if1) = (lab.table().to_string(), lab.iface(0), lab.iface(1));
    admit(&table_name, &if0, true).expect("admit s0");
    admit(&table_name, &if1, true).expect("admit s1");

    let (internet, internet_addr) = listen(Some(&inet), lab.internet_addrs().1);
    assert_connects(&s0, internet_addr, "the internet host");
    let (_, peer) = internet.accept().expect("accept");
    assert_eq!(peer.ip(), IpAddr::V4(lab.internet_addrs().0), "masqueraded");

    let (_dns, dns) = (
        TcpListener::bind((lab.spec.resolver, 53)).expect("listen on the resolver"),
        SocketAddrV4::new(lab.spec.resolver, 53),
    );
    assert_connects(&s0, dns, "the resolver");

    let (_p, private_addr) = listen(Some(&private), lab.private_addrs().1);
    let (_s, sandbox1) = listen(Some(&s1), lab.sandbox_addrs(1).1);
    let (_h, host_end) = listen(None, lab.sandbox_addrs(0).0);
    let (_o, other_host_addr) = listen(None, lab.internet_addrs().0);
    let (_r, resolver_other_port) = listen(None, lab.spec.resolver);
    let refused = [
        ("a private host", private_addr),
        ("another sandbox", sandbox1),
        ("the host end of its own link", host_end),
        ("another host address", other_host_addr),
        ("the resolver off port 53", resolver_other_port),
    ];
    for (what, to) in refused {
        assert_refused(&s0, to, what);
    }
    let (error, took) = udp_error(&s0, private_addr);
    assert_eq!(
        error.raw_os_error(),
        Some(libc::EHOSTUNREACH),
        "udp: {error}"
    );
    assert!(took < FAST, "udp refused only after {took:?}");

    let expected = refused.len() as u64 + 1;
    assert_eq!(refusals(&table_name, &if0).expect("refusals"), expected);
    assert_eq!(refusals(&table_name, &if1).expect("refusals of s1"), 0);
    let mut all = all_refusals(&table_name).expect("all refusals");
    all.sort();
    assert_eq!(all, [(if0.clone(), expected), (if1.clone(), 0)]);
    assert_eq!(forget(&table_name, &if0).expect("forget"), expected);
    let gone = refusals(&table_name, &if0).expect_err("forgotten");
    assert_eq!(gone.kind(), io::ErrorKind::NotFound);
    assert_eq!(forget(&table_name, &if0).expect("forget again"), 0);
    // Forgotten, s0 is out of the egress set.
    assert_refused(&s0, internet_addr, "the internet host after forget");
}

#[test]
fn without_egress_everything_is_refused() {
    let mut lab = Lab::new(3);
    let s0 = lab.sandbox(0);
    let s1 = lab.sandbox(1);
    let inet = lab.internet();
    install(&lab.spec).expect("install");
    let (table_name, if0, if1) = (lab.table().to_string(), lab.iface(0), lab.iface(1));
    admit(&table_name, &if0, false).expect("admit s0 without egress");

    let (_internet, internet_addr) = listen(Some(&inet), lab.internet_addrs().1);
    assert_refused(&s0, internet_addr, "the internet host, no egress");
    assert_refused(&s1, internet_addr, "the internet host, not admitted");
    assert_eq!(refusals(&table_name, &if0).expect("refusals"), 1);
    let error = refusals(&table_name, &if1).expect_err("s1 has no counter");
    assert_eq!(error.kind(), io::ErrorKind::NotFound);

    admit(&table_name, &if0, true).expect("grant egress");
    assert_connects(&s0, internet_addr, "the internet host, egress granted");
    assert_eq!(
        refusals(&table_name, &if0).expect("refusals"),
        1,
        "count kept"
    );
}

#[test]
fn spoofed_source_addresses_are_dropped() {
    let mut lab = Lab::new(4);
    let s0 = lab.sandbox(0);
    let _s1 = lab.sandbox(1);
    let inet = lab.internet();
    install(&lab.spec).expect("install");
    admit(lab.table(), &lab.iface(0), true).expect("admit");

    let receiver = in_netns(&inet, || {
        UdpSocket::bind((lab.internet_addrs().1, 0)).expect("udp receiver")
    });
    let own = lab.sandbox_addrs(0).1;
    let masqueraded = IpAddr::V4(lab.internet_addrs().0);
    assert_eq!(udp_delivery(&s0, own, &receiver), Some(masqueraded));
    // s0 claims the address of s1, which the host routes through s1's link.
    let spoofed = lab.sandbox_addrs(1).1;
    ip(&[
        "-n",
        &s0,
        "addr",
        "add",
        &format!("{spoofed}/32"),
        "dev",
        "eth0",
    ]);
    assert_eq!(
        udp_delivery(&s0, spoofed, &receiver),
        None,
        "spoofed datagram arrived"
    );
}

#[test]
fn a_private_network_grants_exactly_its_allow_list() {
    let mut lab = Lab::new(5);
    let s0 = lab.sandbox(0);
    let s1 = lab.sandbox(1);
    let inet = lab.internet();
    let private = lab.private();
    let (_db, db) = listen(Some(&private), lab.private_addrs().1);
    let (_other, other_port) = listen(Some(&private), lab.private_addrs().1);
    let (_internet, internet_addr) = listen(Some(&inet), lab.internet_addrs().1);
    let network = Network {
        name: "db".into(),
        allow: vec![Allow {
            dest: (*db.ip(), 32),
            proto: Proto::Tcp,
            ports: (db.port(), db.port()),
        }],
    };
    install_with(&lab.spec, &[network]).expect("install");
    admit_to(lab.table(), &lab.iface(0), false, &["db"]).expect("admit s0 to db");
    admit(lab.table(), &lab.iface(1), true).expect("admit s1 with egress");

    assert_connects(&s0, db, "the database its network allows");
    assert_refused(&s0, other_port, "another port of the database host");
    assert_refused(&s0, internet_addr, "the internet, no egress");
    assert_refused(&s1, db, "the database, from outside the network");
    assert_eq!(forget(lab.table(), &lab.iface(0)).expect("forget"), 2);
    assert_refused(&s0, db, "the database after forget");
}

#[test]
fn fib_is_encoded_as_the_kernel_parses_it() {
    // NFTA_EXPR_NAME "fib", then NFTA_EXPR_DATA holding DREG 1, RESULT_OIF,
    // FLAGS saddr|iif|present (0x29), each a big-endian u32 attribute.
    let expected: &[u8] = &[
        8, 0, 1, 0, b'f', b'i', b'b', 0, 28, 0, 2, 0x80, 8, 0, 1, 0, 0, 0, 0, 1, 8, 0, 2, 0, 0, 0,
        0, 1, 8, 0, 3, 0, 0, 0, 0, 0x29,
    ];
    let rule = Message::add_rule("t", "c", &fib_saddr_iif_oif_missing());
    let wire = wire::batch(&[rule], 0);
    assert!(
        wire.windows(expected.len()).any(|w| w == expected),
        "fib expression not found in {wire:02x?}"
    );
}

#[test]
fn what_a_sandbox_starts_ends_in_a_refusal_unless_granted() {
    let spec = spec(6);
    let rules = ruleset(&spec, &[], &Limits::default());
    let texts: Vec<String> = rules
        .iter()
        .map(|r| format!("{}: {}", r.chain, r.text))
        .collect();
    let last_of = |chain: &str| {
        texts
            .iter()
            .rev()
            .find(|t| t.starts_with(&format!("{chain}: ")))
            .cloned()
    };
    assert_eq!(
        last_of(FROM_SANDBOX).as_deref(),
        Some("from_sandbox: goto refuse")
    );
    assert_eq!(last_of(TO_HOST).as_deref(), Some("to_host: goto refuse"));
    for (net, len) in &spec.deny {
        let rule = format!("from_sandbox: ip daddr {net}/{len} goto refuse");
        assert!(texts.contains(&rule), "{rule} missing");
    }
}

#[test]
fn a_dumped_refusal_counter_is_read_back() {
    // As the kernel dumps `iifname "tz0" counter return` with two packets counted.
    let mut attrs = wire::Attrs::default();
    attrs
        .str(uapi::NFTA_RULE_TABLE, "t")
        .str(uapi::NFTA_RULE_CHAIN, REFUSALS)
        .be64(uapi::NFTA_RULE_HANDLE, 7)
        .nest(uapi::NFTA_RULE_EXPRESSIONS, |a| {
            for expr in iifname_is("tz0") {
                expr.encode(a);
            }
            a.nest(uapi::NFTA_LIST_ELEM, |a| {
                a.str(uapi::NFTA_EXPR_NAME, "counter")
                    .nest(uapi::NFTA_EXPR_DATA, |a| {
                        a.be64(uapi::NFTA_COUNTER_PACKETS, 2);
                    });
            });
            for expr in verdict(Verdict::Return) {
                expr.encode(a);
            }
        });
    let rule = wire::dumped_rule(attrs.as_bytes()).expect("a rule");
    assert_eq!(rule.handle, 7);
    assert_eq!(rule.compared, [b"tz0\0".to_vec()]);
    assert_eq!(rule.packets, Some(2));
}

/// A connection from `ns` to `server`'s address: the client's end and the server's.
fn connection(ns: &str, server: &TcpListener) -> (TcpStream, TcpStream) {
    let to = match server.local_addr().expect("server address") {
        std::net::SocketAddr::V4(to) => to,
        other => panic!("an IPv4 server expected, not {other}"),
    };
    let client = match connect(ns, to) {
        (Ok(client), _) => client,
        (Err(e), took) => panic!("{to} from {ns}: {e} after {took:?}, expected a connection"),
    };
    let (served, _) = server.accept().expect("accept");
    (client, served)
}

/// `nft list table`, to see what is left of an interface as an operator would.
fn listing(table_name: &str) -> String {
    let out = Command::new("nft")
        .args(["list", "table", "inet", table_name])
        .output()
        .expect("run nft");
    assert!(
        out.status.success(),
        "nft list table {table_name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A lab for the connection cap: `n` sandboxes admitted for egress, each function capped
/// at `cap`, an internet host and the resolver (TCP and UDP port 53) listening.
struct CapLab {
    lab: Lab,
    sandboxes: Vec<String>,
    ifaces: Vec<String>,
    server: TcpListener,
    to: SocketAddrV4,
    dns: SocketAddrV4,
    /// Listening on TCP, and receiving on UDP, at `dns`.
    resolver: (TcpListener, UdpSocket),
}

impl CapLab {
    fn new(k: u8, n: u8, cap: u32) -> CapLab {
        let mut lab = Lab::new(k);
        let sandboxes = (0..n).map(|i| lab.sandbox(i)).collect();
        let inet = lab.internet();
        lab.resolver();
        let limits = Limits {
            max_connections_per_function: Some(cap),
        };
        install_limited(&lab.spec, &[], &limits).expect("install");
        let ifaces: Vec<String> = (0..n).map(|i| lab.iface(i)).collect();
        for iface in &ifaces {
            admit(lab.table(), iface, true).expect("admit");
        }
        let (server, to) = listen(Some(&inet), lab.internet_addrs().1);
        let dns = SocketAddrV4::new(lab.spec.resolver, 53);
        let resolver = (
            TcpListener::bind(dns).expect("listen on the resolver"),
            UdpSocket::bind(dns).expect("bind the resolver"),
        );
        CapLab {
            lab,
            sandboxes,
            ifaces,
            server,
            to,
            dns,
            resolver,
        }
    }

    fn assign(&self, n: usize, function_id: u32) {
        assign(self.lab.table(), &self.ifaces[n], function_id).expect("assign");
    }

    /// A connection from sandbox `n` to the internet host.
    fn connection(&self, n: usize) -> (TcpStream, TcpStream) {
        connection(&self.sandboxes[n], &self.server)
    }

    /// A connection from sandbox `n`, once the cap lets it through.
    fn connection_when_freed(&self, n: usize, what: &str) -> (TcpStream, TcpStream) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            match connect(&self.sandboxes[n], self.to) {
                (Ok(stream), _) => return (stream, self.server.accept().expect("accept").0),
                (Err(e), _) if Instant::now() > deadline => {
                    panic!("{what} still counts after {PATIENCE:?}: {e}")
                }
                (Err(_), _) => thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    fn assert_refused(&self, n: usize, what: &str) {
        assert_refused(&self.sandboxes[n], self.to, what);
    }
}

#[test]
fn a_functions_sandboxes_share_its_connection_cap() {
    const CAP: u32 = 2;
    let lab = CapLab::new(7, 4, CAP);
    // s0 and s1 serve function 1, s2 function 2; s3 is not handed out yet.
    lab.assign(0, 1);
    lab.assign(0, 1);
    lab.assign(1, 1);
    lab.assign(2, 2);

    let _function1 = [lab.connection(0), lab.connection(1)];
    lab.assert_refused(0, "a connection over function 1's cap");
    lab.assert_refused(1, "the same from function 1's other sandbox");
    let to_host = "the resolver (on the host), over the cap";
    assert_refused(&lab.sandboxes[0], lab.dns, to_host);
    let _function2: Vec<_> = (0..CAP).map(|_| lab.connection(2)).collect();
    lab.assert_refused(2, "a connection over function 2's own cap");
    let _unassigned: Vec<_> = (0..=CAP).map(|_| lab.connection(3)).collect();
    let table_name = lab.lab.table();
    assert_eq!(refusals(table_name, &lab.ifaces[0]).expect("refusals"), 2);

    // Handed to another function, s1's new connections count there; its open one stays
    // with function 1.
    lab.assign(1, 3);
    let _function3 = lab.connection(1);
    lab.assert_refused(0, "function 1, still at its cap");

    for iface in &lab.ifaces {
        forget(table_name, iface).expect("forget");
    }
    let left = listing(table_name);
    for iface in &lab.ifaces {
        let quoted = format!("\"{iface}\"");
        assert!(!left.contains(&quoted), "{iface} left:\n{left}");
    }
}

#[test]
fn a_connection_counts_until_conntrack_sees_it_closed() {
    let lab = CapLab::new(11, 1, 1);
    lab.assign(0, 1);

    // Closed by the sandbox only: conntrack FIN_WAIT, then CLOSE_WAIT, still counted.
    let (client, mut served) = lab.connection(0);
    lab.assert_refused(0, "a second connection");
    client.shutdown(Shutdown::Write).expect("shutdown");
    assert_eq!(served.read(&mut [0; 1]).expect("read the FIN"), 0);
    lab.assert_refused(0, "a connection while one is half closed");

    // Closed by both: TIME_WAIT, which is not counted.
    std::mem::drop(served);
    let (client, served) = lab.connection_when_freed(0, "a closed connection");

    // Reset: CLOSE, not counted either.
    reset(client);
    std::mem::drop(served);
    let (client, served) = lab.connection_when_freed(0, "a reset connection");
    reset(client);
    std::mem::drop(served);

    // A UDP flow (a DNS query) counts until conntrack expires it. The first datagram may
    // still meet the reset connection's count.
    let socket = in_netns(&lab.sandboxes[0], || UdpSocket::bind("0.0.0.0:0"));
    let socket = socket.expect("udp bind");
    let resolver = &lab.resolver.1;
    resolver.set_read_timeout(Some(FAST)).expect("timeout");
    let deadline = Instant::now() + PATIENCE;
    loop {
        socket.send_to(b"query", lab.dns).expect("udp send");
        if resolver.recv_from(&mut [0; 16]).is_ok() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no datagram reached the resolver"
        );
    }
    lab.assert_refused(0, "a connection besides a UDP flow");
}

/// Closes `stream` with a reset (SO_LINGER 0), not a FIN.
fn reset(stream: TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    setsockopt(&stream, sockopt::Linger, &linger).expect("linger 0");
}

/// Bytes per second that `reader` receives, over `WINDOW` once the limit's bucket
/// (a second at the rate plus the burst, full at the start) is surely empty.
fn steady_rate(reader: &mut TcpStream) -> f64 {
    const WARMUP: Duration = Duration::from_secs(1);
    const WINDOW: Duration = Duration::from_secs(2);
    reader
        .set_read_timeout(Some(PATIENCE))
        .expect("read timeout");
    let mut buf = vec![0; 256 * 1024];
    let mut read = |reader: &mut TcpStream| match reader.read(&mut buf) {
        Ok(0) => panic!("the sender stopped"),
        Ok(n) => n as u64,
        Err(e) => panic!("receive: {e}"),
    };
    read(reader);
    let first = Instant::now();
    while first.elapsed() < WARMUP {
        read(reader);
    }
    let (start, mut bytes) = (Instant::now(), 0);
    while start.elapsed() < WINDOW {
        bytes += read(reader);
    }
    bytes as f64 / start.elapsed().as_secs_f64()
}

/// Sends from `writer` until the other end goes away.
fn send_until_closed(mut writer: TcpStream) {
    let chunk = vec![0x5a; 64 * 1024];
    while writer.write_all(&chunk).is_ok() {}
}

/// The steady rate of a bulk transfer between sandbox `ns` and `server`, uploading (the
/// sandbox sends) or downloading.
fn bulk_rate(ns: &str, server: &TcpListener, upload: bool) -> f64 {
    let (client, served) = connection(ns, server);
    let (sender, mut receiver) = if upload {
        (client, served)
    } else {
        (served, client)
    };
    thread::scope(|s| {
        s.spawn(move || send_until_closed(sender));
        let rate = steady_rate(&mut receiver);
        receiver
            .shutdown(Shutdown::Both)
            .expect("stop the transfer");
        rate
    })
}

#[test]
fn a_sandboxs_bandwidth_is_limited_both_ways() {
    const RATE: u64 = 20_000_000;
    let mut lab = Lab::new(8);
    let s0 = lab.sandbox(0);
    let s1 = lab.sandbox(1);
    let inet = lab.internet();
    let limits = Limits {
        max_connections_per_function: Some(64),
    };
    install_limited(&lab.spec, &[], &limits).expect("install");
    let (table_name, if0, if1) = (lab.table().to_string(), lab.iface(0), lab.iface(1));
    let limited = Grants {
        egress: true,
        bandwidth: Some(RATE),
        ..Grants::default()
    };
    admit_with(&table_name, &if0, &limited).expect("admit s0, limited");
    admit(&table_name, &if1, true).expect("admit s1");
    assign(&table_name, &if0, 1).expect("assign s0");
    let (server, _) = listen(Some(&inet), lab.internet_addrs().1);

    let unlimited = bulk_rate(&s1, &server, true);
    let up = bulk_rate(&s0, &server, true);
    let down = bulk_rate(&s0, &server, false);
    eprintln!("limit {RATE} B/s: upload {up:.0}, download {down:.0}; unlimited {unlimited:.0} B/s");
    let rate = RATE as f64;
    assert!(
        unlimited > 2.0 * rate,
        "the link itself is too slow to test a limit of {RATE} B/s: {unlimited:.0}"
    );
    for (what, measured) in [("upload", up), ("download", down)] {
        assert!(
            (0.5 * rate..=1.2 * rate).contains(&measured),
            "{what}: {measured:.0} B/s with a limit of {RATE}"
        );
    }

    let quoted = format!("\"{if0}\"");
    let before = listing(&table_name);
    assert_eq!(before.matches(&quoted).count(), 5, "{before}");
    forget(&table_name, &if0).expect("forget");
    let after = listing(&table_name);
    assert!(!after.contains(&quoted), "{if0} left:\n{after}");
    assert!(
        after.contains(&format!("\"{if1}\"")),
        "{if1} gone too:\n{after}"
    );
}

#[test]
fn a_bandwidth_limit_must_fit_the_kernels_bucket() {
    for rate in [0, MAX_BANDWIDTH + 1] {
        let grants = Grants {
            bandwidth: Some(rate),
            ..Grants::default()
        };
        let error = admit_with("t", "tz0", &grants).expect_err("a bad rate");
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{error}");
    }
    assert_eq!(
        check_bandwidth("tz0", 20_000_000).expect("a rate"),
        2_000_000
    );
    assert_eq!(
        check_bandwidth("tz0", 100_000).expect("a low rate"),
        64 * 1024
    );
}

#[test]
fn the_cap_is_checked_after_the_guard_and_before_any_accept() {
    let spec = spec(9);
    let limits = Limits {
        max_connections_per_function: Some(5),
    };
    let rules = ruleset(&spec, &[], &limits);
    let cap = "ct state new ct mark set iifname map @owner \
               add @fn_conns { ct mark ct count over 5 } goto refuse";
    for chain in [FROM_SANDBOX, TO_HOST] {
        let texts: Vec<&str> = rules
            .iter()
            .filter(|r| r.chain == chain)
            .map(|r| r.text.as_str())
            .collect();
        let at = texts.iter().position(|&t| t == cap);
        assert_eq!(at, Some(4), "{chain}: {texts:#?}");
        let guard_accept = "ct state established,related accept";
        let first_accept = texts
            .iter()
            .position(|t| t.ends_with("accept") && *t != guard_accept);
        assert!(first_accept > at, "{chain}: {texts:#?}");
    }
    let forward: Vec<&str> = rules
        .iter()
        .filter(|r| r.chain == FORWARD)
        .map(|r| r.text.as_str())
        .collect();
    let prefix = &spec.iface_prefix;
    assert_eq!(
        forward[..2],
        [
            format!("iifname \"{prefix}*\" jump bandwidth"),
            format!("oifname \"{prefix}*\" jump bandwidth"),
        ]
    );
    let without = ruleset(&spec, &[], &Limits::default());
    assert!(without.iter().all(|r| !r.text.contains("fn_conns")));
}

/// The bytes of `exprs` in a rule, from the expression's name on.
fn encoded(exprs: &[Expr]) -> Vec<u8> {
    let mut attrs = wire::Attrs::default();
    for expr in exprs {
        expr.encode(&mut attrs);
    }
    attrs.as_bytes().to_vec()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The cap rule (cap 3), as `nft --debug=mnl` (nft 1.0.6) sends the same text: the
/// content of NFTA_RULE_EXPRESSIONS, less the NFTA_LOOKUP_SET_ID and NFTA_DYNSET_SET_ID
/// with which nft names a set made in the same batch (these name it).
const NFT_CAP_RULE: [&str; 14] = [
    "2000018007000100637400001400028008000200000000000800010000000001",
    "440001800c000100626974776973650034000280080001000000000108000200",
    "0000000108000300000000040c00048008000100080000000c00058008000100",
    "000000002c00018008000100636d700020000280080001000000000108000200",
    "000000010c000380080001000000000024000180090001006d65746100000000",
    "1400028008000200000000060800010000000001300001800b0001006c6f6f6b",
    "7570000020000280080002000000000108000300000000010a0001006f776e65",
    "7200000020000180070001006374000014000280080002000000000308000400",
    "0000000120000180070001006374000014000280080002000000000308000100",
    "000000015c0001800b00010064796e73657400004c0002800800040000000001",
    "08000300000000000d000100666e5f636f6e6e7300000000280007800e000100",
    "636f6e6e6c696d69740000001400028008000100000000030800020000000001",
    "3c0001800e000100696d6d656469617465000000280002800800010000000000",
    "1c0002801800028008000100fffffffc0b0002007265667573650000",
];

fn unhex(lines: &[&str]) -> Vec<u8> {
    let hex = lines.concat();
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect()
}

#[test]
fn the_cap_rule_is_what_nft_sends_for_its_text() {
    let limits = Limits {
        max_connections_per_function: Some(3),
    };
    let rules = ruleset(&spec(10), &[], &limits);
    let cap = rules
        .iter()
        .find(|r| r.chain == FROM_SANDBOX && r.text.contains(FN_CONNS_SET))
        .expect("a cap rule");
    assert_eq!(encoded(&cap.exprs), unhex(&NFT_CAP_RULE), "{}", cap.text);
}

#[test]
fn a_byte_limit_is_encoded_as_nft_sends_it() {
    // `limit rate over 20000000 bytes/second burst 2000000 bytes`, from its name on.
    let limit: &[u8] = &[
        10, 0, 1, 0, b'l', b'i', b'm', b'i', b't', 0, 0, 0, 52, 0, 2, 0x80, 12, 0, 1, 0, 0, 0, 0,
        0, 0x01, 0x31, 0x2d, 0x00, 12, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 1, 8, 0, 3, 0, 0x00, 0x1e,
        0x84, 0x80, 8, 0, 4, 0, 0, 0, 0, 1, 8, 0, 5, 0, 0, 0, 0, 1,
    ];
    let policed = encoded(&limit_bytes_over(20_000_000, 2_000_000));
    assert!(
        contains(&policed, limit),
        "limit not found in {policed:02x?}"
    );
}
