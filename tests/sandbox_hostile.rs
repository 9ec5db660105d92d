//! The hostile-function suite: python3.11 functions that try to escape or starve the
//! sandbox, end to end through a real `tern server` with the sandbox on. Each attempt
//! reports what happened (an errno name or an exception), and each test asserts the
//! specific failure, then that the server still serves another function.
//!
//! Needs root (the sandbox needs namespaces, cgroups and mounts); without it every test
//! fails and says so. The tests take turns (one server at a time) so that the CPU and
//! memory attacks are measured on a quiet machine.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{data_path, zip, Invoked, Server};

/// The attacks. One dispatching handler, so one warm instance can try several things.
const ATTACK_PY: &str = r#"
import ctypes, errno, os, platform, signal, socket, time

libc = ctypes.CDLL(None, use_errno=True)

# x86_64 numbers of the syscalls libc has no wrapper for.
NR = {"x86_64": {
    "setns": 308, "pivot_root": 155, "init_module": 175, "finit_module": 313,
    "delete_module": 176, "kexec_load": 246, "bpf": 321, "perf_event_open": 298,
    "keyctl": 250, "add_key": 248, "userfaultfd": 323, "open_by_handle_at": 304,
    "io_uring_setup": 425, "clone3": 435,
}}.get(platform.machine())

def errname(code):
    return errno.errorcode.get(code, str(code))

def call(rc):
    return "ok" if rc != -1 else errname(ctypes.get_errno())

def raw(name, *args):
    return call(libc.syscall(NR[name], *args))

def attempt(fn):
    try:
        fn()
        return "ok"
    except OSError as e:
        return errname(e.errno) if e.errno else type(e).__name__

def read_paths(event):
    def read(path):
        if os.path.isdir(path):
            os.listdir(path)
        else:
            with open(path, "rb") as f:
                f.read(1)
    return {p: attempt(lambda p=p: read(p)) for p in event["paths"]}

def write_paths(event):
    def write(path):
        with open(path, "w") as f:
            f.write("x")
    return {p: attempt(lambda p=p: write(p)) for p in event["paths"]}

def processes(event):
    pids = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
    kills = {str(p): attempt(lambda p=p: os.kill(p, signal.SIGKILL)) for p in event["host_pids"]}
    kills["1"] = attempt(lambda: os.kill(1, signal.SIGKILL))
    time.sleep(0.2)
    return {"pids": pids, "me": os.getpid(), "kills": kills, "init_alive": os.path.exists("/proc/1")}

def network(event):
    out = {}
    for host, port in event["targets"]:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(3)
        t = time.monotonic()
        out[f"{host}:{port}"] = [attempt(lambda: s.connect((host, port))), time.monotonic() - t]
        s.close()
    return out

def fork_bomb(event):
    children = 0
    while True:
        try:
            pid = os.fork()
        except OSError as e:
            return {"errno": errname(e.errno), "children": children}
        if pid == 0:
            time.sleep(600)
            os._exit(0)
        children += 1

def hog(event):
    blocks = []
    while True:
        blocks.append(b"\x01" * (16 << 20))

def fill_tmp(event):
    st = os.statvfs("/tmp")
    chunk = b"\x00" * (1 << 20)
    written, result = 0, "no error"
    try:
        with open("/tmp/fill", "wb") as f:
            while True:
                f.write(chunk)
                written += len(chunk)
    except OSError as e:
        result = errname(e.errno)
    os.remove("/tmp/fill")
    return {"errno": result, "written": written, "size": st.f_blocks * st.f_frsize}

def spin(event):
    deadline = time.monotonic() + event.get("seconds", 1e9)
    before = os.times()
    kids = []
    for _ in range(event.get("procs", 1) - 1):
        pid = os.fork()
        if pid == 0:
            while time.monotonic() < deadline:
                pass
            os._exit(0)
        kids.append(pid)
    while time.monotonic() < deadline:
        pass
    for k in kids:
        os.waitpid(k, 0)
    after = os.times()
    cpu = sum(after[:4]) - sum(before[:4])
    return {"cpu_seconds": cpu}

def syscalls(event):
    netns = os.open("/proc/self/ns/net", os.O_RDONLY)
    return {
        "ptrace_attach": call(libc.ptrace(16, 1, None, None)),
        "ptrace_traceme": call(libc.ptrace(0, 0, None, None)),
        "mount": call(libc.mount(b"none", b"/tmp", b"tmpfs", 0, None)),
        "umount": call(libc.umount2(b"/tmp", 2)),
        "unshare_user": call(libc.unshare(0x10000000)),
        "unshare_mount": call(libc.unshare(0x00020000)),
        "unshare_net": call(libc.unshare(0x40000000)),
        "setns": raw("setns", netns, 0),
        "pivot_root": raw("pivot_root", b"/tmp", b"/tmp"),
        "chroot": call(libc.chroot(b"/tmp")),
        "init_module": raw("init_module", None, 0, b""),
        "finit_module": raw("finit_module", netns, b"", 0),
        "delete_module": raw("delete_module", b"ext4", 0),
        "kexec_load": raw("kexec_load", 0, 0, None, 0),
        "bpf": raw("bpf", 0, None, 0),
        "perf_event_open": raw("perf_event_open", None, 0, -1, -1, 0),
        "keyctl": raw("keyctl", 0, 0, 0, 0, 0),
        "add_key": raw("add_key", b"user", b"x", b"y", 1, 0),
        "userfaultfd": raw("userfaultfd", 0),
        "open_by_handle_at": raw("open_by_handle_at", netns, None, 0),
        "io_uring_setup": raw("io_uring_setup", 1, None),
        "reboot": call(libc.reboot(0)),
        "swapon": call(libc.swapon(b"/tmp/swap", 0)),
        "acct": call(libc.acct(b"/tmp/acct")),
        "sethostname": attempt(lambda: socket.sethostname("evil")),
        "setdomainname": call(libc.setdomainname(b"evil", 4)),
        "raw_socket": attempt(lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)),
        "raw_socket6": attempt(lambda: socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)),
        "packet_socket": attempt(lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)),
        "vsock_socket": attempt(lambda: socket.socket(40, socket.SOCK_STREAM, 0)),
        "alg_socket": attempt(lambda: socket.socket(38, socket.SOCK_SEQPACKET, 0)),
        "key_socket": attempt(lambda: socket.socket(15, socket.SOCK_RAW, 2)),
        "bluetooth_socket": attempt(lambda: socket.socket(31, socket.SOCK_STREAM, 0)),
        "uevent_netlink": attempt(lambda: socket.socket(16, socket.SOCK_DGRAM, 15)),
        "unix_socket": attempt(lambda: socket.socket(socket.AF_UNIX, socket.SOCK_STREAM).close()),
        "route_netlink": attempt(lambda: socket.socket(16, socket.SOCK_RAW, 0).close()),
        "clone3": raw("clone3", None, 0),
        "tcp_socket": attempt(lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM).close()),
    }

HELD = []

def host_activity(event):
    """What the host-wide /proc entries show: nothing, if masked."""
    out = {}
    for path in ("/proc/loadavg", "/proc/diskstats", "/proc/interrupts"):
        try:
            with open(path) as f:
                out[path] = f.read()
        except OSError as e:
            out[path] = errname(e.errno)
    try:
        out["/proc/pressure"] = os.listdir("/proc/pressure")
    except OSError as e:
        out["/proc/pressure"] = errname(e.errno)
    out["own_stat"] = open("/proc/self/stat").read().split()[0] == str(os.getpid())
    return out

def zygote_leftovers(event):
    """What of the zygote a runtime can reach: its call stack, and live dicts that look
    like the zygote's fork requests or hello."""
    import gc, sys
    frames = []
    f = sys._getframe()
    while f is not None:
        frames.append({"name": f.f_code.co_name, "locals": sorted(f.f_locals)})
        f = f.f_back
    leaked = [sorted(o)[:10] for o in gc.get_objects()
              if isinstance(o, dict) and ("cgroup_procs" in o or "preload_as" in o)]
    return {"frames": frames, "leaked": leaked}

def runtime_api_flood(event):
    """Opens many connections to the Runtime API, each with an unterminated 60 KB
    header, and keeps them; reports how many the server still holds open."""
    host, port = os.environ["AWS_LAMBDA_RUNTIME_API"].rsplit(":", 1)
    junk = b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nX-Junk: " + b"a" * 60000
    opened = 0
    for _ in range(event["connections"]):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(2)
        try:
            s.connect((host, int(port)))
            s.sendall(junk)
        except OSError:
            s.close()
            continue
        opened += 1
        HELD.append(s)
    time.sleep(0.5)
    still_open = 0
    for s in HELD:
        s.setblocking(False)
        try:
            still_open += 1 if s.recv(1, socket.MSG_PEEK) else 0
        except BlockingIOError:
            still_open += 1
        except OSError:
            pass
    return {"opened": opened, "still_open": still_open}

HELD_FDS = []

def kernel_quotas(event):
    """Takes per-user kernel counts until the kernel refuses: inotify instances, then
    queued real-time signals (blocked, so they stay pending). Keeps both."""
    import signal, threading
    out = {"uid_map": open("/proc/self/uid_map").read().split()}
    while len(HELD_FDS) < event["inotify"]:
        fd = libc.inotify_init()
        if fd < 0:
            out["inotify_errno"] = errname(ctypes.get_errno())
            break
        HELD_FDS.append(fd)
    out["inotify"] = len(HELD_FDS)
    sig = signal.SIGRTMIN
    signal.pthread_sigmask(signal.SIG_BLOCK, [sig])
    queued = 0
    while queued < event["signals"]:
        try:
            signal.pthread_kill(threading.get_ident(), sig)
        except OSError as e:
            out["signal_errno"] = errname(e.errno)
            break
        queued += 1
    out["signals"] = queued
    return out

def background(event):
    """Leaves a child behind that burns CPU and notes the time every 20 ms."""
    if os.fork() == 0:
        with open("/tmp/beats", "a") as f:
            last = 0.0
            while True:
                now = time.monotonic()
                if now - last >= 0.02:
                    f.write("%f\n" % now)
                    f.flush()
                    last = now
    return {"at": time.monotonic()}

def beats(event):
    """The child's notes since `since`, and the longest pause between two."""
    stamps = []
    for line in open("/tmp/beats").read().split("\n"):
        try:
            stamps.append(float(line))
        except ValueError:
            pass
    stamps = [t for t in stamps if t >= event["since"]]
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    return {"beats": len(stamps), "max_gap": max(gaps) if gaps else None}

def write_tmp(event):
    """Writes `mb` MB of incompressible data to /tmp, then holds the instance."""
    with open("/tmp/data", "wb") as f:
        for _ in range(event["mb"]):
            f.write(os.urandom(1 << 20))
    time.sleep(event["hold"])
    return "written"

def runtime_api_soak(event):
    """For `seconds`, keeps opening Runtime API connections that send an unterminated
    header, holding up to 200 (the oldest closed first)."""
    host, port = os.environ["AWS_LAMBDA_RUNTIME_API"].rsplit(":", 1)
    junk = b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nX-Junk: " + b"a" * 4000
    held, opened, failed = [], 0, 0
    deadline = time.monotonic() + event["seconds"]
    while time.monotonic() < deadline:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(1)
        try:
            s.connect((host, int(port)))
            s.sendall(junk)
            opened += 1
            held.append(s)
        except OSError:
            failed += 1
            s.close()
        if len(held) > 200:
            held.pop(0).close()
    for s in held:
        s.close()
    return {"opened": opened, "failed": failed}

def netadmin(event):
    """Tries to change the sandbox's network or the host's egress policy from inside."""
    import struct
    out = {}
    def netlink(proto, payload):
        s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, proto)
        try:
            s.bind((0, 0))
            s.send(payload)
            s.settimeout(2)
            reply = s.recv(65536)
            # NLMSG_ERROR carries the request's errno (0: acknowledged, it worked).
            if struct.unpack_from("=H", reply, 4)[0] == 2:
                code = -struct.unpack_from("=i", reply, 16)[0]
                return "ok" if code == 0 else errname(code)
            return "answered"
        finally:
            s.close()
    eth0 = socket.if_nametoindex("eth0")
    # RTM_NEWADDR 192.0.2.99/24 on eth0 (NLM_F_REQUEST|ACK|CREATE|EXCL).
    ifa = struct.pack("=BBBBI", socket.AF_INET, 24, 0, 0, eth0)
    rta = struct.pack("=HH", 8, 2) + socket.inet_aton("198.51.100.99")
    msg = ifa + rta
    hdr = struct.pack("=IHHII", 16 + len(msg), 20, 0x1 | 0x4 | 0x400 | 0x200, 1, 0)
    try:
        out["rtnetlink_add_address"] = netlink(0, hdr + msg)
    except OSError as e:
        out["rtnetlink_add_address"] = errname(e.errno) if e.errno else type(e).__name__
    # RTM_DELROUTE of the default route.
    rtm = struct.pack("=BBBBBBBBI", socket.AF_INET, 0, 0, 0, 254, 0, 0, 1, 0)
    hdr = struct.pack("=IHHII", 16 + len(rtm), 25, 0x1 | 0x4, 2, 0)
    try:
        out["rtnetlink_delete_route"] = netlink(0, hdr + rtm)
    except OSError as e:
        out["rtnetlink_delete_route"] = errname(e.errno) if e.errno else type(e).__name__
    # nftables: a batch that adds a table (NFNL_MSG_BATCH_BEGIN, NFT_MSG_NEWTABLE, END).
    def nfmsg(kind, flags, seq, family, body=b"", res_id=0):
        nfgen = struct.pack("=BBH", family, 0, res_id)
        return struct.pack("=IHHII", 16 + len(nfgen) + len(body), kind, flags, seq, 0) + nfgen + body
    name = b"pwned\0"
    attr = struct.pack("=HH", 4 + len(name), 1) + name + b"\0" * ((4 - len(name) % 4) % 4)
    batch = (nfmsg(0x10, 0x1, 1, 0, res_id=socket.htons(10))
             + nfmsg((10 << 8) | 0, 0x1 | 0x4 | 0x400, 2, 1, attr)
             + nfmsg(0x11, 0x1, 3, 0, res_id=socket.htons(10)))
    try:
        out["nftables_add_table"] = netlink(12, batch)
    except OSError as e:
        out["nftables_add_table"] = errname(e.errno) if e.errno else type(e).__name__
    def sock(*args):
        socket.socket(*args).close()
    out["raw_socket"] = attempt(lambda: sock(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW))
    out["packet_socket"] = attempt(lambda: sock(socket.AF_PACKET, socket.SOCK_RAW, 0))
    # SIOCSIFFLAGS: take eth0 down.
    import fcntl
    def down():
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            fcntl.ioctl(s, 0x8914, struct.pack("16sH14x", b"eth0", 0))
        finally:
            s.close()
    out["ioctl_link_down"] = attempt(down)
    def write(path, data):
        with open(path, "w") as f:
            f.write(data)
    out["sysctl_forwarding"] = attempt(lambda: write("/proc/sys/net/ipv4/ip_forward", "0"))
    out["sysctl_rp_filter"] = attempt(lambda: write("/proc/sys/net/ipv4/conf/all/rp_filter", "0"))
    return out

ATTACKS = {
    "netadmin": netadmin,
    "runtime_api_soak": runtime_api_soak,
    "write_tmp": write_tmp,
    "background": background, "beats": beats,
    "kernel_quotas": kernel_quotas,
    "host_activity": host_activity,
    "zygote_leftovers": zygote_leftovers,
    "runtime_api_flood": runtime_api_flood,
    "read": read_paths, "write": write_paths, "processes": processes, "network": network,
    "fork_bomb": fork_bomb, "hog": hog, "fill_tmp": fill_tmp, "spin": spin,
    "syscalls": syscalls, "environ": lambda event: dict(os.environ),
    "memory_holds": lambda event: memory_holds(event),
    "origin": lambda event: origin(),
    "imports": lambda event: imports(),
    "ping": lambda event: "pong",
    "stream": lambda event: CONTEXT.log_stream_name,
}

def memory_holds(event):
    """Whether this process's memory holds the secret with this prefix, length and
    sha256 (the secret itself is never sent here, so finding it proves a leak)."""
    import hashlib
    prefix, length, digest = event["prefix"].encode(), event["length"], event["sha256"]
    found, scanned = False, 0
    with open("/proc/self/maps") as maps, open("/proc/self/mem", "rb", 0) as mem:
        for line in maps:
            fields = line.split()
            if not fields[1].startswith("r") or (len(fields) > 5 and fields[5] in ("[vvar]", "[vsyscall]")):
                continue
            start, end = (int(x, 16) for x in fields[0].split("-"))
            try:
                mem.seek(start)
                data = mem.read(end - start)
            except (OSError, OverflowError, ValueError):
                continue
            scanned += 1
            at = data.find(prefix)
            while at != -1:
                if hashlib.sha256(data[at:at + length]).hexdigest() == digest:
                    found = True
                at = data.find(prefix, at + 1)
    return {"found": found, "regions": scanned}

def origin():
    # /proc/self/environ is the environment the process was exec'd with: an exec'd
    # one's has the function's variables; one exec'd ahead of its instance (which read
    # them from its config descriptor) has only the shape's, and the descriptor's
    # name; a zygote-forked one's is its zygote's.
    import re
    environ = open("/proc/self/environ", "rb").read()
    if b"AWS_LAMBDA_FUNCTION_NAME=" in environ:
        kind = "exec"
    elif b"TERN_CONFIG_FD=" in environ:
        kind = "exec_ahead"
    else:
        kind = "zygote"
    # A runtime started in a sandbox built ahead of time has that sandbox's id.
    held = re.search(r"\]h[0-9]+-[0-9a-f]{8}$", CONTEXT.log_stream_name) is not None
    started = int(open("/proc/self/stat").read().rsplit(")", 1)[1].split()[19])
    return {"kind": kind, "held": held, "started": started,
            "mountinfo": open("/proc/self/mountinfo").read()}

def imports():
    # What the function can import and what is already imported: nothing of the host's
    # site-packages, dist-packages or what their .pth files import.
    import sys
    loaded = sorted(
        getattr(m, "__file__", None) or "" for m in list(sys.modules.values())
    )
    return {"sys_path": sys.path, "no_site": sys.flags.no_site,
            "host_modules": [f for f in loaded if "-packages" in f]}

CONTEXT = None

def handler(event, context):
    global CONTEXT
    CONTEXT = context
    return ATTACKS[event["do"]](event)

def canary(event, context):
    # A name the tests can find on the host, whichever way this runtime started.
    libc.prctl(15, b"tern-canary", 0, 0, 0)
    return "alive"
"#;

/// Only one server at a time: the CPU and memory attacks measure a quiet machine.
static TURN: Mutex<()> = Mutex::new(());

struct Suite {
    server: Server,
    _turn: MutexGuard<'static, ()>,
}

fn require_root() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "the hostile-function suite needs root: it attacks the sandbox, which needs \
         namespaces, cgroups and mounts (without root the server would run functions \
         unsandboxed and every attack would succeed). Run it as root."
    );
}

impl Suite {
    /// A sandboxed server with the `hostile` function and a warm `canary`.
    fn start() -> Suite {
        Suite::start_with(&[])
    }

    /// The same, with extra server flags.
    fn start_with(flags: &[&str]) -> Suite {
        require_root();
        let turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
        let server = Server::start_with(flags);
        let suite = Suite {
            server,
            _turn: turn,
        };
        suite.deploy("hostile", "attack.handler", json!({"Timeout": 30}));
        suite.deploy("canary", "attack.canary", json!({}));
        suite.canary_answers();
        suite
    }

    fn deploy(&self, name: &str, handler: &str, extra: Value) {
        let code = zip(&[("attack.py", ATTACK_PY.as_bytes(), 0o644)]);
        self.server
            .create_function(name, "python3.11", handler, &code, extra);
    }

    /// Invokes `function` with `{"do": what, ...args}`.
    fn attack(&self, function: &str, what: &str, args: Value) -> Invoked {
        let mut payload = json!({ "do": what });
        if let (Some(p), Some(a)) = (payload.as_object_mut(), args.as_object()) {
            p.extend(a.clone());
        }
        self.server.invoke(function, &payload.to_string())
    }

    /// Invokes `function` and expects a result, not a function error.
    fn result(&self, function: &str, what: &str, args: Value) -> Value {
        let out = self.attack(function, what, args);
        assert_eq!(
            out.function_error, None,
            "{what} failed instead of reporting: {}\n{}",
            out.body, out.log
        );
        out.body
    }

    /// The server still serves another function.
    fn canary_answers(&self) {
        let out = self.server.invoke("canary", "{}");
        assert_eq!(out.function_error, None, "canary: {}", out.body);
        assert_eq!(out.body, json!("alive"));
    }

    fn api_port(&self) -> u16 {
        self.server
            .endpoint
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("endpoint has a port")
    }
}

/// `{name: "ERRNO"}` for each entry of an attack's result.
fn outcomes(result: &Value) -> BTreeMap<String, String> {
    result
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

fn assert_outcomes(result: &Value, expected: &[(&str, &str)]) {
    let got = outcomes(result);
    let wrong: Vec<String> = expected
        .iter()
        .filter(|(k, v)| got.get(*k).map(String::as_str) != Some(*v))
        .map(|(k, v)| format!("{k}: expected {v}, got {:?}", got.get(*k)))
        .collect();
    assert!(wrong.is_empty(), "{}\nall: {result}", wrong.join("\n"));
}

/// Host pids of the canary's runtimes (the canary names itself `tern-canary`).
fn canary_host_pids() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
                .filter(|pid| {
                    // Alive (not a zombie of an earlier test's server) and named so.
                    let state = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                        .ok()
                        .and_then(|s| s.rsplit(')').next().map(|r| r.trim().to_string()));
                    let alive = state.is_some_and(|s| !s.starts_with('Z') && !s.starts_with('X'));
                    alive
                        && std::fs::read_to_string(format!("/proc/{pid}/comm"))
                            .is_ok_and(|comm| comm.trim() == "tern-canary")
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The host's own address on its default route, if `ip` can tell.
fn host_address() -> Option<String> {
    let out = std::process::Command::new("ip")
        .args(["-4", "route", "get", "1.1.1.1"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut words = text.split_whitespace();
    words.find(|w| *w == "src")?;
    words.next().map(str::to_string)
}

#[test]
fn function_cannot_read_host_secrets_or_the_server_data() {
    let s = Suite::start();
    let data = s.server.data_dir.display().to_string();
    let creds = s.server.credentials_file().display().to_string();
    let server_proc = format!("/proc/{}/environ", s.server.pid());
    let result = s.result(
        "hostile",
        "read",
        json!({"paths": ["/etc/shadow", "/etc/sudoers", data, creds, server_proc,
                         "/root", "/home", "/work", "/var/lib", "/sys/fs/cgroup",
                         "/proc/1/environ", "/proc/1/root/etc/shadow", "/etc/passwd"]}),
    );
    assert_outcomes(
        &result,
        &[
            ("/etc/shadow", "ENOENT"),
            ("/etc/sudoers", "ENOENT"),
            (&data, "ENOENT"),
            (&creds, "ENOENT"),
            (&server_proc, "ENOENT"),
            ("/root", "ENOENT"),
            ("/home", "ENOENT"),
            ("/work", "ENOENT"),
            ("/var/lib", "ENOENT"),
            ("/sys/fs/cgroup", "ENOENT"),
            // The init's environment (empty anyway) and root are not the runtime's to see.
            ("/proc/1/environ", "EACCES"),
            ("/proc/1/root/etc/shadow", "EACCES"),
            ("/etc/passwd", "ok"),
        ],
    );
    s.canary_answers();
}

#[test]
fn function_cannot_write_outside_tmp() {
    let s = Suite::start();
    let result = s.result(
        "hostile",
        "write",
        json!({"paths": ["/x", "/etc/passwd", "/etc/new", "/var/task/attack.py", "/var/task/x",
                         "/opt/tern/x", "/usr/x", "/usr/bin/python3", "/dev/x", "/tmp/ok"]}),
    );
    assert_outcomes(
        &result,
        &[
            ("/x", "EROFS"),
            ("/etc/passwd", "EROFS"),
            ("/etc/new", "EROFS"),
            ("/var/task/attack.py", "EROFS"),
            ("/var/task/x", "EROFS"),
            ("/opt/tern/x", "EROFS"),
            ("/usr/x", "EROFS"),
            ("/usr/bin/python3", "EROFS"),
            ("/dev/x", "EROFS"),
            ("/tmp/ok", "ok"),
        ],
    );
    s.canary_answers();
}

#[test]
fn function_sees_only_its_own_processes_and_cannot_signal_others() {
    let s = Suite::start();
    let others = canary_host_pids();
    assert!(!others.is_empty(), "the canary instance runs");
    let server_pid = i32::try_from(s.server.pid()).expect("pid");
    // Pids this large cannot exist inside a fresh pid namespace, so a kill that worked
    // would have hit a host process.
    let targets: Vec<i32> = std::iter::once(server_pid)
        .chain(others.iter().copied())
        .filter(|p| *p > 1000)
        .collect();
    let result = s.result("hostile", "processes", json!({"host_pids": targets}));
    let pids: Vec<i64> = result["pids"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_i64).collect())
        .unwrap_or_default();
    let me = result["me"].as_i64().unwrap_or_default();
    assert_eq!(
        pids,
        vec![1, me],
        "/proc lists only the init and the runtime: {result}"
    );
    for pid in &targets {
        assert_eq!(
            result["kills"][pid.to_string()],
            "ESRCH",
            "host pid {pid}: {result}"
        );
    }
    // Pid 1 is the sandbox's own init: the kernel ignores SIGKILL to a namespace init
    // from inside, so the call "succeeds" and nothing happens.
    assert_eq!(result["kills"]["1"], "ok", "{result}");
    assert_eq!(result["init_alive"], true, "{result}");
    let again = s.attack("hostile", "ping", json!({}));
    assert_eq!(again.body, json!("pong"));
    assert!(
        !again.log.contains("Init Duration"),
        "the instance survived: {}",
        again.log
    );
    let canary = s.server.invoke("canary", "{}");
    assert_eq!(canary.body, json!("alive"));
    assert!(
        !canary.log.contains("Init Duration"),
        "the other instance was not killed: {}",
        canary.log
    );
    assert_eq!(canary_host_pids(), others);
}

#[test]
fn function_cannot_reach_platform_ports() {
    let s = Suite::start();
    let api = s.api_port();
    let mut targets = vec![
        json!(["127.0.0.1", api]),
        json!(["127.0.0.1", 5432]),
        json!(["127.0.0.1", 6379]),
        json!(["169.254.169.254", 80]),
        json!(["1.1.1.1", 443]),
    ];
    let host = host_address();
    if let Some(ip) = &host {
        targets.push(json!([ip, api]));
    }
    let result = s.result("hostile", "network", json!({ "targets": targets }));
    let mut expected = vec![
        (format!("127.0.0.1:{api}"), "ECONNREFUSED"),
        ("127.0.0.1:5432".to_string(), "ECONNREFUSED"),
        ("127.0.0.1:6379".to_string(), "ECONNREFUSED"),
        ("169.254.169.254:80".to_string(), "ENETUNREACH"),
        ("1.1.1.1:443".to_string(), "ENETUNREACH"),
    ];
    if let Some(ip) = host {
        expected.push((format!("{ip}:{api}"), "ENETUNREACH"));
    }
    for (target, errno) in expected {
        let got = &result[&target];
        assert_eq!(got[0], errno, "{target}: {result}");
        let seconds = got[1].as_f64().unwrap_or(f64::MAX);
        assert!(
            seconds < 0.5,
            "{target} failed slowly ({seconds} s): {result}"
        );
    }
    s.canary_answers();
}

#[test]
fn an_egress_function_cannot_change_its_network_or_the_policy() {
    let world = support::testnet::World::shared();
    let s = Suite::start();
    s.deploy(
        "hostile-net",
        "attack.handler",
        json!({"Timeout": 30, "TernNetwork": {"Mode": "egress"}}),
    );
    let result = s.result("hostile-net", "netadmin", json!({}));
    // Each attempt fails: seccomp refuses the socket, or the kernel the change (the
    // sandbox's processes hold no capability over its network namespace).
    for (attempt, outcome) in outcomes(&result) {
        assert!(
            matches!(
                outcome.as_str(),
                "EPERM" | "EACCES" | "EROFS" | "EAFNOSUPPORT"
            ),
            "{attempt} should be refused: {outcome}\nall: {result}"
        );
    }
    assert_eq!(outcomes(&result).len(), 8, "{result}");
    // The policy holds afterwards: the internet is reached, a private host is not.
    let targets = json!([
        [
            support::testnet::INTERNET.to_string(),
            support::testnet::HTTP_PORT
        ],
        [
            support::testnet::PRIVATE.to_string(),
            support::testnet::HTTP_PORT
        ],
    ]);
    let result = s.result("hostile-net", "network", json!({ "targets": targets }));
    let internet = format!(
        "{}:{}",
        support::testnet::INTERNET,
        support::testnet::HTTP_PORT
    );
    let private = format!(
        "{}:{}",
        support::testnet::PRIVATE,
        support::testnet::HTTP_PORT
    );
    assert_eq!(result[&internet][0], "ok", "{result}");
    assert_eq!(result[&private][0], "ECONNREFUSED", "{result}");
    s.canary_answers();
    drop(world);
}

#[test]
fn fork_bomb_hits_the_pids_limit_and_the_next_invoke_works() {
    let s = Suite::start();
    let result = s.result("hostile", "fork_bomb", json!({}));
    assert_eq!(result["errno"], "EAGAIN", "{result}");
    let children = result["children"].as_u64().unwrap_or_default();
    eprintln!("fork bomb: {children} children, then EAGAIN");
    assert!(
        (10..1024).contains(&children),
        "stopped by the pids limit: {result}"
    );
    s.canary_answers();
    let next = s.attack("hostile", "ping", json!({}));
    assert_eq!(next.function_error, None, "{}", next.body);
    assert_eq!(next.body, json!("pong"));
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn host_wide_proc_entries_show_nothing_of_other_tenants() {
    let s = Suite::start();
    let seen = s.result("hostile", "host_activity", json!({}));
    for path in ["/proc/loadavg", "/proc/diskstats", "/proc/interrupts"] {
        let v = &seen[path];
        // Empty where the host has the file; absent (ENOENT) where it has not.
        assert!(
            v == &json!("") || v == &json!("ENOENT"),
            "{path} shows host activity: {seen}"
        );
    }
    let pressure = &seen["/proc/pressure"];
    assert!(
        pressure == &json!([]) || pressure == &json!("ENOENT"),
        "{seen}"
    );
    // The instance's own /proc still works.
    assert_eq!(seen["own_stat"], json!(true), "{seen}");
    s.canary_answers();
}

/// What host root can still do: make an inotify instance and queue a real-time signal
/// (run in a child process, so the test's own signal mask stays as it is).
fn host_root_quotas() -> String {
    let probe = r#"
import ctypes, signal, threading
libc = ctypes.CDLL(None, use_errno=True)
fd = libc.inotify_init()
print("inotify", "ok" if fd >= 0 else ctypes.get_errno())
signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGRTMIN])
try:
    signal.pthread_kill(threading.get_ident(), signal.SIGRTMIN)
    print("signal ok")
except OSError as e:
    print("signal", e.errno)
"#;
    let out = std::process::Command::new("python3")
        .args(["-S", "-c", probe])
        .output()
        .expect("run python3");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The host uid that root inside the function's instance maps to.
fn outside_uid(quotas: &Value) -> u64 {
    quotas["uid_map"][1]
        .as_str()
        .and_then(|u| u.parse().ok())
        .unwrap_or_else(|| panic!("no uid map in {quotas}"))
}

#[test]
fn each_instance_has_its_own_kernel_quotas_and_servers_never_share_host_uids() {
    let s = Suite::start();
    let taken = s.result(
        "hostile",
        "kernel_quotas",
        json!({"inotify": 100_000, "signals": 1_000_000}),
    );
    eprintln!(
        "function took {} inotify instances ({}) and queued {} signals ({})",
        taken["inotify"], taken["inotify_errno"], taken["signals"], taken["signal_errno"]
    );
    // The function ran into limits, and they were its own uid's ...
    assert_eq!(taken["inotify_errno"], "EMFILE", "{taken}");
    assert_eq!(taken["signal_errno"], "EAGAIN", "{taken}");
    assert!(taken["inotify"].as_u64() >= Some(64), "{taken}");
    // ... so host root still has all of its own.
    assert_eq!(
        host_root_quotas(),
        "inotify ok\nsignal ok\n",
        "a function used up host root's per-user kernel quotas"
    );
    // Another function's instance has its own quotas too.
    s.deploy("hostile-2", "attack.handler", json!({"Timeout": 30}));
    let second = s.result(
        "hostile-2",
        "kernel_quotas",
        json!({"inotify": 100_000, "signals": 10}),
    );
    assert!(second["inotify"].as_u64() >= Some(64), "{second}");
    assert_eq!(second["signals"], 10, "{second}");
    assert_ne!(outside_uid(&taken), outside_uid(&second));
    s.canary_answers();

    // A second server on the host hands out uids from another range.
    let other = Server::start();
    let code = zip(&[("attack.py", ATTACK_PY.as_bytes(), 0o644)]);
    other.create_function("hostile", "python3.11", "attack.handler", &code, json!({}));
    let out = other.invoke(
        "hostile",
        &json!({"do": "kernel_quotas", "inotify": 1, "signals": 1}).to_string(),
    );
    assert_eq!(out.function_error, None, "{}", out.body);
    let range = |uid: u64| (uid - u64::from(tern_sandbox::uid_range::FIRST_UID)) / 65_536;
    let (mine, theirs) = (outside_uid(&taken), outside_uid(&out.body));
    assert_ne!(
        range(mine),
        range(theirs),
        "two servers share host uid range: {mine} and {theirs}"
    );
}

/// The value of an unlabelled metric in the server's `/metrics`.
fn metric(server: &Server, name: &str) -> f64 {
    let text = server.request("GET", "/metrics", &[], b"").text();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"))
}

#[test]
fn tmp_disk_budget_refuses_cold_starts_past_it_and_metrics_show_disk_use() {
    let config = tempfile::NamedTempFile::new().expect("config file");
    std::fs::write(
        config.path(),
        "tmp_disk_budget_mb = 1024\nqueue_timeout_ms = 500\n",
    )
    .expect("write config");
    let path = config.path().display().to_string();
    let s = Suite::start_with(&["--config", &path]);
    s.deploy(
        "big-tmp",
        "attack.handler",
        json!({"Timeout": 30, "EphemeralStorage": {"Size": 1024}}),
    );
    const MIB: f64 = 1024.0 * 1024.0;
    std::thread::scope(|scope| {
        let holder = scope.spawn(|| s.attack("big-tmp", "write_tmp", json!({"mb": 64, "hold": 4})));
        // While big-tmp holds the whole budget, its /tmp shows at /metrics ...
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut used = 0.0;
        while Instant::now() < deadline && used < 64.0 * MIB {
            std::thread::sleep(Duration::from_millis(100));
            used = metric(&s.server, "tern_tmp_disk_used_bytes");
        }
        assert!(used >= 64.0 * MIB, "tmp_disk_used_bytes {used}");
        assert_eq!(
            metric(&s.server, "tern_tmp_disk_budget_bytes"),
            1024.0 * MIB
        );
        assert_eq!(
            metric(&s.server, "tern_tmp_disk_claimed_bytes"),
            1024.0 * MIB
        );
        // ... and another function's cold start is refused, saying why.
        let refused = s.server.request(
            "POST",
            "/2015-03-31/functions/hostile/invocations",
            &[],
            br#"{"do": "ping"}"#,
        );
        assert_eq!(refused.status, 429, "{}", refused.text());
        assert!(
            refused.text().contains("of 1024 MB of /tmp disk"),
            "{}",
            refused.text()
        );
        let held = holder.join().expect("holder");
        assert_eq!(held.body, json!("written"), "{}", held.log);
    });
    // Once big-tmp is idle, it makes room.
    let next = s.attack("hostile", "ping", json!({}));
    assert_eq!(next.body, json!("pong"), "{}", next.log);
}

/// The `q`-quantile of `samples` (sorted in place).
fn quantile(samples: &mut [Duration], q: f64) -> Duration {
    samples.sort();
    let at = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len());
    samples[at - 1]
}

/// Keeps `target` connections from `source` open, each having sent part of a request
/// header and nothing more, replacing those the server closes, until `until`. Returns
/// how many it opened.
fn hold_half_open_connections(
    server: &Server,
    source: Ipv4Addr,
    target: usize,
    until: Instant,
) -> usize {
    use std::io::Write;
    let partial = format!(
        "POST /2015-03-31/functions/canary/invocations HTTP/1.1\r\nHost: {}\r\nX-Amz-Date: 2",
        server.host
    );
    let mut held: Vec<std::net::TcpStream> = Vec::new();
    let mut opened = 0;
    while Instant::now() < until {
        // Drop what the server closed (a 503 over the cap, or the header timeout).
        held.retain(|c| {
            let _ = c.set_nonblocking(true);
            let mut byte = [0u8; 1];
            matches!(c.peek(&mut byte), Err(ref e) if e.kind() == std::io::ErrorKind::WouldBlock)
        });
        while held.len() < target && Instant::now() < until {
            let mut c = support::connect_from(server, source);
            let _ = c.write_all(partial.as_bytes());
            held.push(c);
            opened += 1;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    opened
}

/// Raises this process's open-file limit to what the half-open client needs.
fn raise_nofile(to: u64) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    setrlimit(Resource::RLIMIT_NOFILE, to.min(hard), hard).expect("setrlimit");
}

#[test]
fn soak_a_runtime_api_attack_and_half_open_clients_leave_other_tenants_within_bounds() {
    // Bounds for this 2-core machine, debug build, under both attacks at once. Without
    // the caps the half-open connections alone make every request fail.
    const SOAK: Duration = Duration::from_secs(15);
    const WARM_INVOKE_P99: Duration = Duration::from_millis(250);
    const CREATE_FUNCTION_P99: Duration = Duration::from_secs(2);
    // More than the server's per-peer cap (1024), from an address of its own.
    const HALF_OPEN: usize = 1500;
    raise_nofile(4096);
    let s = Suite::start();
    let code = zip(&[("attack.py", ATTACK_PY.as_bytes(), 0o644)]);
    let fds_before = open_fds(s.server.pid());
    let until = Instant::now() + SOAK;
    let mut invokes = Vec::new();
    let mut creates = Vec::new();
    let mut failures = Vec::new();
    // Server descriptors beyond the connections, at most: each live instance holds a
    // few (Runtime API listener and connection, output pipe, process handles), and so
    // does each sandbox or runtime built ahead (new functions deepen those pools).
    const FDS_PER_INSTANCE: usize = 16;
    let mut peak_fds = 0;
    let mut fd_bound = 0;
    let (attack, half_open) = std::thread::scope(|scope| {
        let attack = scope.spawn(|| {
            s.attack(
                "hostile",
                "runtime_api_soak",
                json!({"seconds": SOAK.as_secs()}),
            )
        });
        let half_open = scope.spawn(|| {
            hold_half_open_connections(&s.server, Ipv4Addr::new(127, 0, 0, 2), HALF_OPEN, until)
        });
        let mut n = 0;
        while Instant::now() < until {
            let started = Instant::now();
            let r = s.server.request(
                "POST",
                "/2015-03-31/functions/canary/invocations",
                &[],
                b"{}",
            );
            invokes.push(started.elapsed());
            if r.status != 200 || r.text() != "\"alive\"" {
                failures.push(format!("invoke: {} {}", r.status, r.text()));
            }
            n += 1;
            if n % 25 == 0 {
                let started = Instant::now();
                let created = s.server.try_create_function(
                    &format!("soak-{n}"),
                    "python3.11",
                    "attack.handler",
                    &code,
                    json!({}),
                );
                creates.push(started.elapsed());
                if created.status != 201 {
                    failures.push(format!("create: {} {}", created.status, created.text()));
                }
                let fds = open_fds(s.server.pid());
                // Instances, and what the server built ahead (each holds a sandbox's
                // descriptors too).
                let instances = metric(&s.server, "tern_instances") as usize
                    + metric(&s.server, "tern_built_ahead") as usize;
                if fds > peak_fds {
                    peak_fds = fds;
                    fd_bound = fds_before + 1024 + 300 + FDS_PER_INSTANCE * instances;
                }
            }
        }
        (
            attack.join().expect("attacker"),
            half_open.join().expect("half-open client"),
        )
    });
    let (warm_p99, create_p99) = (quantile(&mut invokes, 0.99), quantile(&mut creates, 0.99));
    eprintln!(
        "soak: {} warm invokes (p50 {:?}, p99 {warm_p99:?}), {} creates (p99 {create_p99:?}); \
         runtime API attack {}; {half_open} half-open connections opened; server fds \
         {fds_before} before, {peak_fds} at most",
        invokes.len(),
        quantile(&mut invokes, 0.5),
        creates.len(),
        attack.body,
    );
    assert!(
        failures.is_empty(),
        "{} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(
        invokes.len() >= 100 && creates.len() >= 4,
        "too few samples"
    );
    assert!(warm_p99 <= WARM_INVOKE_P99, "warm invoke p99 {warm_p99:?}");
    assert!(
        create_p99 <= CREATE_FUNCTION_P99,
        "CreateFunction p99 {create_p99:?}"
    );
    // The attacks really ran, and the caps held what they made the server hold.
    assert!(
        attack.body["opened"].as_u64() >= Some(100),
        "{}",
        attack.body
    );
    assert!(half_open >= HALF_OPEN, "opened {half_open}");
    assert!(
        peak_fds < fd_bound,
        "server fds peaked at {peak_fds}, over {fd_bound}"
    );
    s.canary_answers();
}

#[test]
fn idle_instances_are_frozen_until_their_next_request() {
    let s = Suite::start();
    let started = s.result("hostile", "background", json!({}));
    std::thread::sleep(Duration::from_millis(1500));
    let seen = s.result("hostile", "beats", json!({"since": started["at"]}));
    eprintln!("background child while idle: {seen}");
    // The child ran until the instance went idle, stopped while it was, and ran again
    // once the next request thawed it.
    let gap = seen["max_gap"].as_f64().unwrap_or_default();
    assert!(
        gap >= 1.0,
        "a background child kept running while its instance was idle: {seen}"
    );
    assert!(seen["beats"].as_u64() >= Some(2), "{seen}");
    s.canary_answers();
}

/// The CFS period an instance's cgroup enforces its CPU share over, read on the host
/// (cgroup v1 `cpu.cfs_period_us`, or v2 `cpu.max`), in microseconds.
fn cpu_period_of(instance: &str) -> Option<u64> {
    for root in [
        "/sys/fs/cgroup/cpu/tern",
        "/sys/fs/cgroup/cpu,cpuacct/tern",
        "/sys/fs/cgroup/tern",
    ] {
        let Ok(servers) = std::fs::read_dir(root) else {
            continue;
        };
        for server in servers.filter_map(|e| e.ok()) {
            let dir = server.path().join(instance);
            if let Ok(v) = std::fs::read_to_string(dir.join("cpu.cfs_period_us")) {
                return v.trim().parse().ok();
            }
            if let Ok(v) = std::fs::read_to_string(dir.join("cpu.max")) {
                return v.split_whitespace().nth(1)?.parse().ok();
            }
        }
    }
    None
}

/// An instance starts over the long CFS period (its start-up runs as one burst) and,
/// once idle, enforces the same share over the short warm period, so that a request
/// that finds its quota spent waits at most that long.
#[test]
fn an_instance_switches_to_the_short_cpu_period_once_started() {
    let s = Suite::start();
    let stream = s.result("hostile", "stream", json!({}));
    let id = stream
        .as_str()
        .and_then(|s| s.rsplit(']').next())
        .expect("log stream name")
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let period = cpu_period_of(&id);
        if period == Some(10_000) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "instance {id} still enforces its share over {period:?} us"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    s.canary_answers();
}

#[test]
fn runtime_api_flood_is_capped_per_instance_and_the_instance_keeps_serving() {
    let s = Suite::start();
    let before = open_fds(s.server.pid());
    let result = s.result("hostile", "runtime_api_flood", json!({"connections": 300}));
    eprintln!("runtime API flood: {result}");
    let still_open = result["still_open"].as_u64().unwrap_or(u64::MAX);
    // The runtime's own connection takes one of the instance's four.
    assert!(
        still_open <= 3,
        "the server held {still_open} of the flood's connections"
    );
    let after = open_fds(s.server.pid());
    assert!(
        after < before + 50,
        "the server's descriptors grew from {before} to {after}"
    );
    // The instance keeps its Runtime API: the same runtime answers again.
    let next = s.attack("hostile", "ping", json!({}));
    assert_eq!(next.function_error, None, "{}", next.body);
    assert_eq!(next.body, json!("pong"));
    s.canary_answers();
}

#[test]
fn memory_hog_gets_out_of_memory_and_a_fresh_instance() {
    let s = Suite::start();
    s.deploy(
        "hog",
        "attack.handler",
        json!({"MemorySize": 128, "Timeout": 30}),
    );
    let started = Instant::now();
    let out = s.attack("hog", "hog", json!({}));
    eprintln!("memory hog: {} after {:?}", out.body, started.elapsed());
    assert_eq!(
        out.function_error.as_deref(),
        Some("Unhandled"),
        "{}",
        out.body
    );
    assert_eq!(out.body["errorType"], "Runtime.OutOfMemory", "{}", out.body);
    let message = out.body["errorMessage"].as_str().unwrap_or_default();
    assert!(
        message.contains("exceeded memory limit"),
        "{message}\n{}",
        out.log
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "killed promptly"
    );
    s.canary_answers();
    let next = s.attack("hog", "ping", json!({}));
    assert_eq!(next.function_error, None, "{}", next.body);
    assert_eq!(next.body, json!("pong"));
    assert!(
        next.log.contains("Init Duration"),
        "a fresh instance: {}",
        next.log
    );
}

#[test]
fn filling_tmp_is_enospc_not_an_oom_kill() {
    let s = Suite::start();
    // 128 MB of memory, 512 MB of /tmp: /tmp must not count against memory.
    let result = s.result("hostile", "fill_tmp", json!({}));
    assert_eq!(result["errno"], "ENOSPC", "{result}");
    eprintln!("/tmp: {result}");
    let mb = |v: &Value| v.as_u64().unwrap_or_default() >> 20;
    assert!(
        mb(&result["size"]) >= 512,
        "/tmp is its full size: {result}"
    );
    assert!(
        (512..=600).contains(&mb(&result["written"])),
        "stopped at the size of /tmp: {result}"
    );
    let next = s.attack("hostile", "ping", json!({}));
    assert_eq!(next.body, json!("pong"));
    assert!(
        !next.log.contains("Init Duration"),
        "same instance: {}",
        next.log
    );
    s.canary_answers();
}

/// A function whose init spins: the CPU it used in the first half second of its
/// start-up (boosted to a full core), and in the second after (its share).
const SPIN_INIT_PY: &str = r#"
import time
def _spin(seconds):
    wall_end = time.monotonic() + seconds
    cpu_start = time.process_time()
    while time.monotonic() < wall_end:
        pass
    return time.process_time() - cpu_start
BOOSTED = _spin(0.4)
time.sleep(0.2)
AFTER = _spin(1.0)

def handler(event, context):
    return {"boosted": BOOSTED, "after": AFTER}
"#;

/// A start-up runs on a full core for its first half second only: a function whose
/// init spins gets its share after that, so that no tenant can hold whole cores for
/// the init timeout by cold-starting a spinning init again and again.
#[test]
fn a_start_up_gets_a_full_core_for_half_a_second_then_its_share() {
    let s = Suite::start();
    let code = zip(&[("spin_init.py", SPIN_INIT_PY.as_bytes(), 0o644)]);
    s.server.create_function(
        "spin-init",
        "python3.11",
        "spin_init.handler",
        &code,
        json!({"Timeout": 10}),
    );
    let out = s.server.invoke("spin-init", "{}");
    eprintln!("spinning init: {}", out.body);
    let boosted = out.body["boosted"].as_f64().unwrap_or_default();
    let after = out.body["after"].as_f64().unwrap_or(f64::MAX);
    // 0.4 s of spinning on a full core, against a quarter core (plus at most one
    // period's banked burst) once the boost is over.
    assert!(
        boosted >= 0.25,
        "the start-up was not boosted: {}",
        out.body
    );
    assert!(
        after <= 0.45,
        "the boost outlived its half second: {}",
        out.body
    );
    s.canary_answers();
}

#[test]
fn cpu_spinner_times_out_while_another_function_answers_quickly() {
    let s = Suite::start();
    s.deploy("spinner", "attack.handler", json!({"Timeout": 2}));

    // Beyond its share: four busy processes for one second get about a quarter of a
    // CPU between them (the floor for 128 MB), not the host's cores.
    let share = s.result("hostile", "spin", json!({"seconds": 1.0, "procs": 4}));
    let cpu = share["cpu_seconds"].as_f64().unwrap_or(f64::MAX);
    eprintln!("four spinning processes used {cpu:.3} s of CPU in 1 s");
    assert!((0.05..0.6).contains(&cpu), "CPU used in 1 s: {share}");

    let (latencies, spun) = std::thread::scope(|scope| {
        let spinner = scope.spawn(|| s.attack("spinner", "spin", json!({"procs": 4})));
        std::thread::sleep(Duration::from_millis(300));
        let mut latencies = Vec::new();
        while !spinner.is_finished() {
            let t = Instant::now();
            s.canary_answers();
            latencies.push(t.elapsed());
            std::thread::sleep(Duration::from_millis(50));
        }
        (latencies, spinner.join().expect("spinner thread"))
    });
    assert_eq!(
        spun.function_error.as_deref(),
        Some("Unhandled"),
        "{}",
        spun.body
    );
    assert_eq!(spun.body["errorType"], "Sandbox.Timedout", "{}", spun.body);
    assert!(latencies.len() >= 5, "canary invoked during the spin");
    let slowest = latencies.iter().max().copied().unwrap_or_default();
    eprintln!(
        "canary during the spin: {} invokes, slowest {slowest:?}",
        latencies.len()
    );
    assert!(
        slowest < Duration::from_millis(500),
        "canary latencies while spinning: {latencies:?}"
    );
    let next = s.attack("spinner", "ping", json!({}));
    assert_eq!(next.body, json!("pong"));
    assert!(
        next.log.contains("Init Duration"),
        "a fresh instance: {}",
        next.log
    );
}

#[test]
fn privileged_syscalls_are_denied() {
    let s = Suite::start();
    let result = s.result("hostile", "syscalls", json!({}));
    let mut expected: Vec<(&str, &str)> = [
        "ptrace_attach",
        "ptrace_traceme",
        "mount",
        "umount",
        "unshare_user",
        "unshare_mount",
        "unshare_net",
        "setns",
        "pivot_root",
        "chroot",
        "init_module",
        "finit_module",
        "delete_module",
        "kexec_load",
        "bpf",
        "perf_event_open",
        "keyctl",
        "add_key",
        "userfaultfd",
        "open_by_handle_at",
        "io_uring_setup",
        "reboot",
        "swapon",
        "acct",
        "sethostname",
        "setdomainname",
        "raw_socket",
        "raw_socket6",
        "packet_socket",
        "vsock_socket",
        "alg_socket",
        "key_socket",
        "bluetooth_socket",
        "uevent_netlink",
    ]
    .into_iter()
    .map(|name| (name, "EPERM"))
    .collect();
    expected.push(("clone3", "ENOSYS"));
    expected.push(("tcp_socket", "ok"));
    expected.push(("unix_socket", "ok"));
    expected.push(("route_netlink", "ok"));
    assert_outcomes(&result, &expected);
    s.canary_answers();
}

#[test]
fn environment_holds_only_function_and_lambda_variables() {
    let s = Suite::start();
    s.deploy(
        "envy",
        "attack.handler",
        json!({"Environment": {"Variables": {"MY_SETTING": "42"}}}),
    );
    let env = s.result("envy", "environ", json!({}));
    let env: BTreeMap<String, String> = env
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default();
    const LAMBDA: &[&str] = &[
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_LOG_GROUP_NAME",
        "AWS_LAMBDA_LOG_STREAM_NAME",
        "AWS_LAMBDA_LOG_FORMAT",
        "AWS_LAMBDA_INITIALIZATION_TYPE",
        "AWS_LAMBDA_RUNTIME_API",
        "AWS_EXECUTION_ENV",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "_HANDLER",
        "_X_AMZN_TRACE_ID",
        "LAMBDA_TASK_ROOT",
        "LAMBDA_RUNTIME_DIR",
        "NODE_PATH",
        "PATH",
        "LANG",
        "TZ",
        "HOME",
        "MY_SETTING",
    ];
    let unexpected: Vec<(&String, &String)> = env
        .iter()
        // Python's own locale coercion (PEP 538) when LANG names a locale the
        // interpreter cannot load: set inside, not inherited.
        .filter(|(k, v)| !(k.as_str() == "LC_CTYPE" && v.as_str() == "C.UTF-8"))
        .filter(|(k, _)| !LAMBDA.contains(&k.as_str()))
        .collect();
    assert!(
        unexpected.is_empty(),
        "host variables leaked: {unexpected:?} in {env:?}"
    );
    assert_eq!(env.get("MY_SETTING").map(String::as_str), Some("42"));
    assert_eq!(env.get("HOME").map(String::as_str), Some("/tmp"));
    let data_dir = s.server.data_dir.display().to_string();
    for (k, v) in &env {
        assert!(
            !v.contains(&data_dir)
                && !v.contains(&s.server.access_key)
                && !v.contains(&s.server.secret),
            "{k}={v} reveals the server's data dir or credentials"
        );
    }
    s.canary_answers();
}

/// Where no zygote forks Python, a cold start usually takes a runtime exec'd ahead of
/// time into a held sandbox, before the function was known, which read its instance's
/// environment from a descriptor. It must be as isolated as a fresh one.
#[test]
fn runtimes_execd_ahead_of_time_are_as_isolated_as_fresh_ones() {
    let s = Suite::start_with(&["--zygote", "false"]);
    let name = s.cold_start_where("exec_ahead", json!({}), |o| {
        matches!(
            (o["started"].as_u64(), o["deployed"].as_u64()),
            (Some(started), Some(deployed)) if started < deployed
        )
    });
    s.assert_isolated(&name);
}

/// With no runtime started ahead, a Python cold start forks its runtime from the
/// namespace's zygote. It must be as isolated as an exec'd one, and nothing of one
/// function may reach the next child of the same zygote.
#[test]
fn zygote_forked_instances_are_as_isolated_as_execd_ones() {
    let s = Suite::start_with(&["--prewarm", "0"]);
    let secret = format!("zsecret-{}", uuid::Uuid::new_v4().simple());
    let first = s.cold_start_of_kind_with(
        "zygote",
        json!({"Environment": {"Variables": {"ZSECRET": secret}}}),
    );
    s.assert_isolated(&first);
    let probe = json!({
        "prefix": "zsecret-",
        "length": secret.len(),
        "sha256": sha256_hex(secret.as_bytes()),
    });
    // The scan works: the function that has the secret finds it in its own memory.
    let own = s.result(&first, "memory_holds", probe.clone());
    assert_eq!(own["found"], json!(true), "{own}");
    let second = s.cold_start_of_kind("zygote");
    let other = s.result(&second, "memory_holds", probe);
    assert_eq!(other["found"], json!(false), "{other}");
    let env = s.result(&second, "environ", json!({}));
    assert!(env.get("ZSECRET").is_none(), "{env}");
    // Nothing of the zygote's request handling is reachable from the runtime: not its
    // frames (the fork request, the hello with the data dir, sibling pids), not the
    // dicts they held.
    let left = s.result(&second, "zygote_leftovers", json!({}));
    let frames = left["frames"].as_array().cloned().unwrap_or_default();
    for frame in &frames {
        let name = frame["name"].as_str().unwrap_or_default();
        assert!(
            !["_spawn", "_enter", "_runtime"].contains(&name),
            "a zygote frame is on the runtime's stack: {left}"
        );
        let locals = frame["locals"].to_string();
        for secret in ["\"runtimes\"", "\"hello\"", "\"req\""] {
            assert!(!locals.contains(secret), "zygote locals reachable: {left}");
        }
    }
    assert_eq!(left["leaked"], json!([]), "{left}");
    // A variable that changes how Python starts rules the zygote out: that runtime is
    // exec'd with it.
    s.cold_start_of_kind_with(
        "exec",
        json!({"Environment": {"Variables": {"PYTHONDONTWRITEBYTECODE": "1"}}}),
    );
}

/// Clock ticks since boot, as a new process's start time shows them.
fn now_ticks() -> u64 {
    let mut probe = std::process::Command::new("/bin/sleep")
        .arg("1")
        .spawn()
        .expect("spawn");
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", probe.id())).unwrap_or_default();
    let _ = probe.kill();
    let _ = probe.wait();
    stat.rsplit(')')
        .next()
        .and_then(|r| r.split_whitespace().nth(19))
        .and_then(|v| v.parse().ok())
        .expect("start time")
}

/// A Python cold start may take a runtime its namespace's zygote forked into a held
/// sandbox before the function even existed, waiting for its code and environment.
#[test]
fn runtimes_forked_ahead_of_time_are_as_isolated() {
    let s = Suite::start();
    let name = s.cold_start_where("zygote", json!({}), |o| {
        matches!(
            (o["started"].as_u64(), o["deployed"].as_u64()),
            (Some(started), Some(deployed)) if started < deployed
        )
    });
    s.assert_isolated(&name);
}

/// Cold starts take sandboxes built ahead of time (no code, no runtime yet) when they
/// can. A runtime forked or exec'd into one must be as isolated as any other.
#[test]
fn runtimes_started_in_held_sandboxes_are_as_isolated() {
    let s = Suite::start_with(&["--prewarm", "0"]);
    let forked = s.cold_start_where("zygote", json!({}), |o| o["held"] == json!(true));
    s.assert_isolated(&forked);
    let execd = s.cold_start_where(
        "exec",
        json!({"Environment": {"Variables": {"PYTHONDONTWRITEBYTECODE": "1"}}}),
        |o| o["held"] == json!(true),
    );
    s.assert_isolated(&execd);
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Suite {
    /// Deploys fresh functions until a cold start's runtime came about as `kind` says
    /// (see `origin()` in the attack code); returns that function's name.
    fn cold_start_of_kind(&self, kind: &str) -> String {
        self.cold_start_of_kind_with(kind, json!({}))
    }

    fn cold_start_of_kind_with(&self, kind: &str, extra: Value) -> String {
        self.cold_start_where(kind, extra, |_| true)
    }

    /// Deploys fresh functions until a cold start came about as `kind` says and its
    /// origin also satisfies `also`; returns that function's name.
    fn cold_start_where(&self, kind: &str, extra: Value, also: impl Fn(&Value) -> bool) -> String {
        let mut seen = Vec::new();
        for i in 0..20 {
            let name = format!(
                "{kind}{i}-{}",
                &uuid::Uuid::new_v4().simple().to_string()[..6]
            );
            let deployed = now_ticks();
            self.deploy(&name, "attack.handler", extra.clone());
            let mut origin = self.result(&name, "origin", json!({}));
            origin["deployed"] = json!(deployed);
            if origin["kind"] == json!(kind) && also(&origin) {
                let data = self.server.data_dir.display().to_string();
                let mountinfo = origin["mountinfo"].as_str().unwrap_or_default();
                assert!(
                    !mountinfo.contains(&data),
                    "mountinfo reveals the data dir:\n{mountinfo}"
                );
                return name;
            }
            seen.push(json!([origin["kind"], origin["held"]]));
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("no cold start was {kind} as wanted: {seen:?}");
    }

    /// The core of the suite against one function's warm instance.
    fn assert_isolated(&self, name: &str) {
        let data = self.server.data_dir.display().to_string();
        let creds = self.server.credentials_file().display().to_string();
        let read = self.result(
            name,
            "read",
            json!({"paths": ["/etc/shadow", data, creds, "/root", "/work", "/var/task/attack.py"]}),
        );
        assert_outcomes(
            &read,
            &[
                ("/etc/shadow", "ENOENT"),
                (&data, "ENOENT"),
                (&creds, "ENOENT"),
                ("/root", "ENOENT"),
                ("/work", "ENOENT"),
                ("/var/task/attack.py", "ok"),
            ],
        );
        let write = self.result(
            name,
            "write",
            json!({"paths": ["/var/task/attack.py", "/var/task/new", "/etc/x", "/tmp/ok"]}),
        );
        assert_outcomes(
            &write,
            &[
                ("/var/task/attack.py", "EROFS"),
                ("/var/task/new", "EROFS"),
                ("/etc/x", "EROFS"),
                ("/tmp/ok", "ok"),
            ],
        );
        let server_pid = self.server.pid();
        let procs = self.result(name, "processes", json!({"host_pids": [server_pid]}));
        assert_eq!(procs["kills"][server_pid.to_string()], "ESRCH", "{procs}");
        let syscalls = self.result(name, "syscalls", json!({}));
        assert_outcomes(
            &syscalls,
            &[
                ("mount", "EPERM"),
                ("unshare_mount", "EPERM"),
                ("setns", "EPERM"),
                ("ptrace_attach", "EPERM"),
                ("raw_socket", "EPERM"),
            ],
        );
        let network = self.result(
            name,
            "network",
            json!({"targets": [["127.0.0.1", self.api_port()], ["127.0.0.1", 5432]]}),
        );
        for (target, outcome) in network.as_object().into_iter().flatten() {
            assert_ne!(outcome[0], json!("ok"), "{target} reachable: {network}");
        }
        let imports = self.result(name, "imports", json!({}));
        let path: Vec<&str> = imports["sys_path"]
            .as_array()
            .map(|p| p.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        assert_eq!(
            path[..3],
            [
                "/var/task",
                "/opt/python/lib/python3.11/site-packages",
                "/opt/python"
            ],
            "{imports}"
        );
        assert!(
            path[3..].iter().all(|p| !p.contains("-packages")),
            "host packages on sys.path: {imports}"
        );
        assert_eq!(imports["no_site"], json!(1), "{imports}");
        assert_eq!(imports["host_modules"], json!([]), "{imports}");
        let env = self.result(name, "environ", json!({}));
        assert!(env.get("TERN_CONFIG_FD").is_none(), "{env}");
        assert_eq!(env["AWS_LAMBDA_FUNCTION_NAME"], json!(name));
        self.canary_answers();
    }
}

/// The function of the post-init template tests (SnapStart). Its init leaves state in
/// memory: the instances forked from one template share its `TOKEN`, while an instance
/// that ran its own init drew its own. Variables switch on what else the init does.
const SNAP_PY: &str = r#"
import errno, mmap, os, random, secrets, signal, socket, time, uuid

MARK = os.environ.get("MARK", "")
INIT_TYPE = os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE")
TOKEN = secrets.token_hex(16)
# The generator has state before any fork.
random.random()

if os.environ.get("INIT_PRINTS"):
    print("loading function")
if os.environ.get("INIT_FAILS"):
    import tern_no_such_module
def admin_probes(flags):
    """In a child: a user and network namespace of its own (as a template's fork makes
    them), then what root of that namespace could reach. Returns each attempt's errno
    name ("ok" on success)."""
    import ctypes, json
    libc = ctypes.CDLL(None, use_errno=True)
    def errno_of(rc):
        code = ctypes.get_errno()
        return "ok" if rc >= 0 else errno.errorcode.get(code, str(code))
    def run():
        out = {"unshare": errno_of(libc.unshare(flags))}
        if out["unshare"] != "ok":
            return out
        uid, gid = 993, 990
        for name, text in (("setgroups", "deny"), ("uid_map", "%d %d 1" % (uid, uid)),
                           ("gid_map", "%d %d 1" % (gid, gid))):
            with open("/proc/self/" + name, "w") as f:
                f.write(text)
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        info = ctypes.create_string_buffer(b"filter".ljust(84, b"\0"), 84)
        size = ctypes.c_uint(84)
        out["iptables"] = errno_of(libc.getsockopt(s.fileno(), 0, 64, info, ctypes.byref(size)))
        out["arptables"] = errno_of(libc.getsockopt(s.fileno(), 0, 96, info, ctypes.byref(size)))
        out["ip6tables"] = errno_of(libc.getsockopt(s.fileno(), 41, 64, info, ctypes.byref(size)))
        out["bridge"] = errno_of(libc.ioctl(s.fileno(), 0x89a0, ctypes.create_string_buffer(b"tbr0")))
        one = ctypes.c_int(1)
        out["tcp_repair"] = errno_of(libc.setsockopt(t.fileno(), 6, 19, ctypes.byref(one), 4))
        return out
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            result = run()
        except Exception as e:
            result = {"error": repr(e)}
        try:
            os.write(w, json.dumps(result).encode())
        finally:
            os._exit(0)
    os.close(w)
    data = b""
    while True:
        chunk = os.read(r, 65536)
        if not chunk:
            break
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    return json.loads(data or b"{}")

# What the template's init could do with the unshare its forks need, and with another.
PROBES = None
if os.environ.get("INIT_PROBES"):
    PROBES = {"fork_flags": admin_probes(0x10000000 | 0x20000 | 0x40000000 | 0x08000000
                                         | 0x04000000 | 0x20000000),
              "user_net": admin_probes(0x10000000 | 0x40000000)}

if os.environ.get("INIT_HOARDS"):
    # The init subverts the template: it keeps a copy of every /tmp disk handed to it
    # for a fork.
    HOARD = []
    _recv_fds = socket.recv_fds
    def _hoarding(sock, bufsize, maxfds, flags=0):
        msg, fds, got_flags, addr = _recv_fds(sock, bufsize, maxfds, flags)
        if len(fds) == 5:
            HOARD.append(os.dup(fds[4]))
        return msg, fds, got_flags, addr
    socket.recv_fds = _hoarding

if os.environ.get("INIT_SPAWNS"):
    # A helper process started by the init and left running.
    import subprocess
    HELPER = subprocess.Popen(["sleep", "60"])
if os.environ.get("INIT_SHARES"):
    # What init code often sets up: files on /tmp (a cache, a log) and shared memory.
    FIRST = open("/tmp/first", "a+b")
    SECOND = open("/tmp/second", "a+b")
    MAPPED = mmap.mmap(-1, 4096)

# What this instance's requests left in its memory, and its first random numbers.
NOTES = []
DRAWS = None

def errname(code):
    return errno.errorcode.get(code, str(code))

def attempt(fn):
    try:
        fn()
        return "ok"
    except OSError as e:
        return errname(e.errno) if e.errno else type(e).__name__

def proc_pid():
    """This process's pid as /proc numbers it (a fork's /proc is its template's)."""
    for line in open("/proc/self/status"):
        if line.startswith("NSpid:"):
            return int(line.split()[1])

def share(note):
    for f in (FIRST, SECOND):
        f.write((note + "\n").encode())
        f.flush()
    free = next(i for i in range(0, len(MAPPED), 16) if MAPPED[i:i + 16] == bytes(16))
    MAPPED[free:free + 16] = note.encode()

def shared():
    def text(f):
        return os.pread(f.fileno(), 1 << 16, 0).decode()
    def opened(f):
        return os.readlink("/proc/self/fd/%d" % f.fileno())
    chunks = (MAPPED[i:i + 16] for i in range(0, len(MAPPED), 16))
    return {"first": text(FIRST), "first_is": opened(FIRST),
            "second": text(SECOND), "second_is": opened(SECOND),
            "mapped": [c.decode() for c in chunks if c != bytes(16)]}

def hold(event, context):
    """Leaves a note in memory and in /tmp (and in what init shared), keeps the instance
    busy, then reports what it sees."""
    note = secrets.token_hex(8)
    NOTES.append(note)
    with open("/tmp/note-" + note, "w") as f:
        f.write(note)
    if os.environ.get("INIT_SHARES"):
        share(note)
    time.sleep(event["seconds"])
    return {"instance": context.log_stream_name, "token": TOKEN, "mark": MARK,
            "env_mark": os.environ.get("MARK"), "init_type": INIT_TYPE,
            "env_init_type": os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE"),
            "probes": PROBES, "pid": proc_pid(), "notes": NOTES,
            "tmp": sorted(os.listdir("/tmp")), "draws": DRAWS,
            "shared": shared() if os.environ.get("INIT_SHARES") else None}

def reach(pid, sig):
    """What this process can do to `pid` through /proc: read its memory, environment
    and root, list its descriptors, signal it through a pidfd."""
    proc = "/proc/%d" % pid
    def read(path):
        with open(path, "rb") as f:
            f.read(1)
    def signal_through_proc():
        fd = os.open(proc, os.O_RDONLY | os.O_DIRECTORY)
        try:
            signal.pidfd_send_signal(fd, sig)
        finally:
            os.close(fd)
    return {"mem": attempt(lambda: read(proc + "/mem")),
            "environ": attempt(lambda: read(proc + "/environ")),
            "root_tmp": attempt(lambda: os.listdir(proc + "/root/tmp")),
            "fds": attempt(lambda: os.listdir(proc + "/fd")),
            "signal": attempt(signal_through_proc)}

def unix_sockets():
    """This process's descriptors that are unix sockets (as the template's control
    socket is)."""
    found = []
    for name in os.listdir("/proc/self/fd"):
        try:
            fd = os.dup(int(name))
        except OSError:
            continue  # the listing's own descriptor, closed by now
        try:
            s = socket.socket(fileno=fd)
        except OSError:
            os.close(fd)
            continue
        if s.family == socket.AF_UNIX:
            found.append(int(name))
        s.close()
    return found

def pry(event, context):
    """Tries every process of `pids` (as /proc numbers them) but itself and its init:
    /proc, then kill(2) with the same numbers."""
    time.sleep(event["seconds"])
    me = proc_pid()
    init = int(open("/proc/self/stat").read().rsplit(")", 1)[1].split()[1])
    others = {}
    for pid in event["pids"]:
        if pid in (me, init):
            continue
        others[str(pid)] = reach(pid, signal.SIGKILL)
        # In its own pid namespace, 1 and 2 are its init and itself.
        if pid > 2:
            others[str(pid)]["kill"] = attempt(lambda: os.kill(pid, signal.SIGKILL))
    return {"instance": context.log_stream_name, "token": TOKEN, "pid": me,
            "listed": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
            "own": reach(me, 0), "others": others, "unix_sockets": unix_sockets()}

def crash(event, context):
    """Ends this instance's runtime, so the next request starts another."""
    os._exit(1)

def handler(event, context):
    global DRAWS
    if DRAWS is None:
        DRAWS = {"random": random.random(), "uuid": str(uuid.uuid4()),
                 "secrets": secrets.token_hex(16)}
    return {"hold": hold, "pry": pry, "crash": crash}[event["do"]](event, context)
"#;

/// How long a `hold` keeps its instance busy: long enough that a burst's requests all
/// overlap, so that the ones no idle instance takes cold-start.
const HOLD_SECONDS: f64 = 0.4;
/// Bursts within which two instances of a SnapStart function must have forked from one
/// template (its template builds in the background, in well under a second).
const FORK_ROUNDS: usize = 6;

/// What [`Suite::until_forked`] saw: the latest report of each instance (by log stream),
/// and the init token of the template that forked two of them or more.
struct Seen {
    reports: BTreeMap<String, Value>,
    token: String,
}

impl Seen {
    fn forks(&self) -> Vec<&Value> {
        self.reports
            .values()
            .filter(|r| r["token"] == self.token.as_str())
            .collect()
    }

    fn tokens(&self) -> BTreeSet<String> {
        self.reports
            .values()
            .filter_map(|r| r["token"].as_str().map(str::to_string))
            .collect()
    }

    /// Every instance ran the init of the configuration it serves, which set `mark`.
    fn assert_init_marked(&self, mark: &str) {
        for report in self.reports.values() {
            assert_eq!(report["env_mark"], mark, "{report}");
            assert_eq!(
                report["mark"], mark,
                "an instance carries the init state of another function or revision: {report}"
            );
        }
    }
}

/// The strings of a JSON array.
fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

impl Suite {
    /// Deploys `SNAP_PY` as `name`, with SnapStart on and these environment variables.
    fn deploy_snap(&self, name: &str, vars: Value) {
        self.deploy_snap_py(name, vars, true);
    }

    fn deploy_snap_py(&self, name: &str, vars: Value, snap_start: bool) {
        let code = zip(&[("snap.py", SNAP_PY.as_bytes(), 0o644)]);
        let apply_on = if snap_start {
            "PublishedVersions"
        } else {
            "None"
        };
        self.server.create_function(
            name,
            "python3.11",
            "snap.handler",
            &code,
            json!({
                "Timeout": 10,
                "SnapStart": {"ApplyOn": apply_on},
                "Environment": {"Variables": vars},
            }),
        );
    }

    /// UpdateFunctionConfiguration with these environment variables: a new revision.
    fn update_vars(&self, name: &str, vars: Value) {
        let resp = self.server.request(
            "PUT",
            &format!("/2015-03-31/functions/{name}/configuration"),
            &[("content-type", "application/json")],
            json!({"Environment": {"Variables": vars}})
                .to_string()
                .as_bytes(),
        );
        assert_eq!(resp.status, 200, "update {name}: {}", resp.text());
    }

    /// `n` invocations of `function` at once, with `{"do": what, ...args}`.
    fn burst(&self, function: &str, n: usize, what: &str, args: &Value) -> Vec<Invoked> {
        std::thread::scope(|scope| {
            let calls: Vec<_> = (0..n)
                .map(|_| scope.spawn(|| self.attack(function, what, args.clone())))
                .collect();
            calls
                .into_iter()
                .map(|c| c.join().expect("invoke thread"))
                .collect()
        })
    }

    /// The same, expecting results, not function errors.
    fn burst_results(&self, function: &str, n: usize, what: &str, args: &Value) -> Vec<Value> {
        self.burst(function, n, what, args)
            .into_iter()
            .map(|out| {
                assert_eq!(
                    out.function_error, None,
                    "{what} failed: {}\n{}",
                    out.body, out.log
                );
                out.body
            })
            .collect()
    }

    /// Keeps every instance of `function` busy, and two requests more (which cold-start),
    /// until two instances share an init token: forked from one template.
    fn until_forked(&self, function: &str) -> Seen {
        let mut reports: BTreeMap<String, Value> = BTreeMap::new();
        let hold = json!({ "seconds": HOLD_SECONDS });
        for _ in 0..FORK_ROUNDS {
            for report in self.burst_results(function, reports.len() + 2, "hold", &hold) {
                let instance = report["instance"].as_str().unwrap_or_default().to_string();
                reports.insert(instance, report);
            }
            let mut by_token: BTreeMap<String, usize> = BTreeMap::new();
            for report in reports.values() {
                let token = report["token"].as_str().unwrap_or_default().to_string();
                *by_token.entry(token).or_default() += 1;
            }
            if let Some((token, _)) = by_token.into_iter().find(|(_, n)| *n >= 2) {
                return Seen { reports, token };
            }
        }
        let tokens: Vec<&Value> = reports.values().map(|r| &r["token"]).collect();
        panic!(
            "no two instances of {function} forked from one template in {FORK_ROUNDS} \
             bursts (one init token each): {tokens:?}"
        );
    }
}

/// A template holds one revision's init state (module globals set from its
/// configuration): no instance of another function, or of a later revision of its own,
/// may start from it.
#[test]
fn a_template_serves_only_its_own_function_and_revision() {
    let s = Suite::start();
    s.deploy_snap("snap-a", json!({"MARK": "a"}));
    s.deploy_snap("snap-b", json!({"MARK": "b"}));
    let (a, b) = std::thread::scope(|scope| {
        let a = scope.spawn(|| s.until_forked("snap-a"));
        let b = s.until_forked("snap-b");
        (a.join().expect("snap-a"), b)
    });
    a.assert_init_marked("a");
    b.assert_init_marked("b");
    // As on Lambda SnapStart, the init ran as a snap-start init; each fork serves with
    // its own instance's environment.
    for fork in a.forks() {
        assert_eq!(fork["init_type"], "snap-start", "{fork}");
        assert_eq!(fork["env_init_type"], "on-demand", "{fork}");
    }
    assert!(
        a.tokens().is_disjoint(&b.tokens()),
        "two functions share init state: {:?} and {:?}",
        a.tokens(),
        b.tokens()
    );

    s.update_vars("snap-a", json!({"MARK": "a2"}));
    let a2 = s.until_forked("snap-a");
    a2.assert_init_marked("a2");
    assert!(
        a2.tokens().is_disjoint(&a.tokens()),
        "an instance of the new revision carries the old one's init state: {:?}",
        a2.reports
    );
    s.canary_answers();
}

/// Forks of one template start from the same memory and /tmp, and go their own ways:
/// what one request leaves in a module global or in /tmp, no sibling sees.
#[test]
fn forked_siblings_keep_their_tmp_and_memory_to_themselves() {
    let s = Suite::start();
    s.deploy_snap("twins", json!({}));
    let seen = s.until_forked("twins");
    // Every instance at once: each leaves a note, waits, then looks.
    let now = s.burst_results(
        "twins",
        seen.reports.len(),
        "hold",
        &json!({ "seconds": HOLD_SECONDS }),
    );
    let forks: Vec<&Value> = now.iter().filter(|r| r["token"] == seen.token).collect();
    assert!(forks.len() >= 2, "siblings answered together: {now:?}");
    for fork in &forks {
        let notes = strings(&fork["notes"]);
        let tmp = strings(&fork["tmp"]);
        // The instance keeps what its own requests left (so looking works).
        for note in &notes {
            assert!(tmp.contains(&format!("note-{note}")), "{fork}");
        }
        for sibling in forks.iter().filter(|o| o["instance"] != fork["instance"]) {
            for note in strings(&sibling["notes"]) {
                assert!(
                    !notes.contains(&note),
                    "a fork sees a sibling's module global {note}: {fork}"
                );
                assert!(
                    !tmp.contains(&format!("note-{note}")),
                    "a fork sees a sibling's /tmp file note-{note}: {fork}"
                );
            }
        }
    }
    s.canary_answers();
}

/// Forks of one template share its procfs (mounted `hidepid=invisible`): each must
/// neither list, read nor signal any process but its own, siblings and the template
/// included, and must hold nothing of the template's control socket.
#[test]
fn forked_siblings_cannot_see_read_or_signal_each_other() {
    let s = Suite::start();
    s.deploy_snap("twins", json!({}));
    let seen = s.until_forked("twins");
    // Every pid the template's /proc has handed out, and room for more forks.
    let top = seen
        .forks()
        .iter()
        .filter_map(|r| r["pid"].as_u64())
        .max()
        .unwrap_or_default();
    let pids: Vec<u64> = (1..=top + 30).collect();
    let pried = s.burst_results(
        "twins",
        seen.reports.len(),
        "pry",
        &json!({"seconds": 0.3, "pids": pids}),
    );
    let forks: Vec<&Value> = pried.iter().filter(|r| r["token"] == seen.token).collect();
    assert!(forks.len() >= 2, "siblings answered together: {pried:?}");
    for fork in &forks {
        let me = &fork["pid"];
        // The probes work where they are allowed: on the fork itself (its mem and
        // environ are root's, as it is not dumpable).
        assert_outcomes(
            &fork["own"],
            &[("root_tmp", "ok"), ("fds", "ok"), ("signal", "ok")],
        );
        assert_eq!(
            fork["listed"],
            json!([me]),
            "/proc lists only the fork itself: {fork}"
        );
        for sibling in forks.iter().filter(|o| o["instance"] != fork["instance"]) {
            let pid = &sibling["pid"];
            // The same process as in the bursts before, so alive when pried.
            if let Some(earlier) = seen
                .reports
                .get(sibling["instance"].as_str().unwrap_or_default())
            {
                assert_eq!(&earlier["pid"], pid, "{sibling}");
            }
            assert!(
                fork["others"].get(pid.to_string()).is_some(),
                "the fork {me} did not try its sibling {pid}: {fork}"
            );
        }
        for (pid, tried) in fork["others"].as_object().into_iter().flatten() {
            for (what, outcome) in tried.as_object().into_iter().flatten() {
                assert_ne!(
                    outcome, "ok",
                    "the fork {me} reached pid {pid} ({what}): {tried}"
                );
            }
        }
        assert_eq!(
            fork["unix_sockets"],
            json!([]),
            "a fork holds a unix socket (the template's control socket is one): {fork}"
        );
    }
    s.canary_answers();
}

/// CPython reseeds `random` in a forked child; uuid4 and secrets read the kernel. Forks
/// of one template must not hand out the same "random" values.
#[test]
fn forks_of_one_template_draw_different_random_numbers() {
    let s = Suite::start();
    s.deploy_snap("dice", json!({}));
    let seen = s.until_forked("dice");
    let forks = seen.forks();
    for what in ["random", "uuid", "secrets"] {
        let draws: Vec<String> = forks.iter().map(|r| r["draws"][what].to_string()).collect();
        let distinct: BTreeSet<&String> = draws.iter().collect();
        assert!(!draws.contains(&"null".to_string()), "{draws:?}");
        assert_eq!(
            distinct.len(),
            draws.len(),
            "forks of one template drew the same {what}: {draws:?}"
        );
    }
}

/// A SnapStart function whose init fails gets no template: its instances start as usual
/// and report the init error as Lambda does, as they would without SnapStart. Once
/// fixed, the next revision forks from a template again.
#[test]
fn a_snap_start_function_whose_init_fails_reports_the_init_error() {
    let s = Suite::start();
    let broken = json!({"INIT_FAILS": "1"});
    s.deploy_snap("broken", broken.clone());
    s.deploy_snap_py("broken-plain", broken, false);
    let plain = s.attack("broken-plain", "hold", json!({"seconds": 0}));
    assert_eq!(
        plain.body["errorType"], "Runtime.ImportModuleError",
        "{}",
        plain.body
    );
    let mut outs = vec![s.attack("broken", "hold", json!({"seconds": 0}))];
    outs.extend(s.burst("broken", 3, "hold", &json!({"seconds": 0})));
    outs.push(s.attack("broken", "hold", json!({"seconds": 0})));
    for out in &outs {
        assert_eq!(
            out.function_error.as_deref(),
            Some("Unhandled"),
            "{}",
            out.body
        );
        assert_eq!(
            out.body["errorType"], plain.body["errorType"],
            "{}",
            out.body
        );
        assert_eq!(
            out.body["errorMessage"], plain.body["errorMessage"],
            "{}",
            out.body
        );
    }
    assert!(s.server.healthy());
    s.canary_answers();

    s.update_vars("broken", json!({"MARK": "fixed"}));
    s.until_forked("broken").assert_init_marked("fixed");
}

/// Lambda functions commonly print as their init runs: that must not cost them their
/// template.
#[test]
fn a_function_whose_init_prints_still_forks_from_its_template() {
    let s = Suite::start();
    s.deploy_snap("chatty", json!({"INIT_PRINTS": "1"}));
    s.until_forked("chatty");
}

/// Bursts of `function` after a control function with the same init is seen forked
/// from its template: every instance of `function` must have run an init of its own (no
/// two share its token). Returns their reports.
fn never_forked(s: &Suite, function: &str) -> Vec<Value> {
    s.deploy_snap("plain", json!({}));
    s.until_forked("plain");
    let mut reports = Vec::new();
    for _ in 0..3 {
        reports.extend(s.burst_results(function, 3, "hold", &json!({ "seconds": HOLD_SECONDS })));
    }
    let mut instances_by_token: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in &reports {
        instances_by_token
            .entry(r["token"].as_str().unwrap_or_default().to_string())
            .or_default()
            .insert(r["instance"].as_str().unwrap_or_default().to_string());
    }
    assert!(
        instances_by_token
            .values()
            .all(|instances| instances.len() == 1),
        "instances of {function} share an init (forked from a template): {instances_by_token:?}"
    );
    reports
}

/// The template's init may make the forks' one `unshare`, and so be root of a network
/// namespace of its own; what that would reach (x_tables, bridges, TCP repair) must stay
/// denied, and any other `unshare` too.
#[test]
fn a_template_init_cannot_administer_a_network_namespace_of_its_own() {
    let s = Suite::start();
    s.deploy_snap("admin", json!({"INIT_PROBES": "1"}));
    let seen = s.until_forked("admin");
    let fork = seen.forks()[0];
    let probes = &fork["probes"];
    assert_eq!(probes["user_net"], json!({"unshare": "EPERM"}), "{fork}");
    let own = &probes["fork_flags"];
    assert_eq!(own["unshare"], "ok", "the forks' own unshare: {fork}");
    for what in ["iptables", "arptables", "ip6tables", "bridge", "tcp_repair"] {
        assert_eq!(
            own[what], "EPERM",
            "{what} from the template's init: {fork}"
        );
    }
}

/// Loop devices backing this server's /tmp disks right now.
fn tmp_loop_devices(server: &Server) -> usize {
    let data_dir = data_path(server, "");
    let Ok(devices) = std::fs::read_dir("/sys/block") else {
        return 0;
    };
    devices
        .flatten()
        .filter_map(|d| std::fs::read_to_string(d.path().join("loop/backing_file")).ok())
        .filter(|backing| std::path::Path::new(backing.trim()).starts_with(&data_dir))
        .count()
}

/// A subverted template keeps every /tmp disk handed to it for a fork: what it holds
/// must go when it is retired after its last fork, not pile up on the host disk.
#[test]
fn what_a_template_holds_of_its_forks_is_released_with_it() {
    let s = Suite::start();
    s.deploy_snap("hoarder", json!({"INIT_HOARDS": "1"}));
    s.until_forked("hoarder");
    let before = tmp_loop_devices(&s.server);
    // Each request ends its instance, so each next one is a fork with a disk of its own:
    // more forks than a template makes.
    for _ in 0..40 {
        let invoked = s.server.invoke("hoarder", r#"{"do": "crash"}"#);
        assert_eq!(invoked.status, 200, "{invoked:?}");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = tmp_loop_devices(&s.server);
        if now < before + 24 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{now} loop devices back this server's /tmp disks, {before} before 40 forks"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    s.canary_answers();
}

/// A process the init left running would live on beside the forks, in the template's
/// sandbox: such a function gets no template.
#[test]
fn an_init_that_leaves_a_process_running_gets_no_template() {
    let s = Suite::start();
    s.deploy_snap("spawner", json!({"INIT_SPAWNS": "1"}));
    let reports = never_forked(&s, "spawner");
    assert!(
        reports.iter().all(|r| r["token"].is_string()),
        "{reports:?}"
    );
}

/// What an init opens or maps (files on /tmp, shared memory) forks would share, where a
/// restored SnapStart instance has its own copy: such a function gets no template, and
/// each of its instances runs its own init, so what one writes there no other reads.
#[test]
fn an_init_that_leaves_files_or_shared_memory_open_gets_no_template() {
    let s = Suite::start();
    s.deploy_snap("sharer", json!({"INIT_SHARES": "1"}));
    let reports = never_forked(&s, "sharer");
    // Each reads back its own notes, and none of another instance's.
    let mut wrong = Vec::new();
    for r in &reports {
        let instance = &r["instance"];
        let shared = &r["shared"];
        let mapped = strings(&shared["mapped"]);
        for note in strings(&r["notes"]) {
            for file in ["first", "second"] {
                if !shared[file].as_str().unwrap_or_default().contains(&note) {
                    wrong.push(format!("{instance} lost its note {note} in {file}"));
                }
            }
            if !mapped.contains(&note) {
                wrong.push(format!("{instance} lost its note {note} in its mapping"));
            }
        }
        for other in reports.iter().filter(|o| &o["instance"] != instance) {
            for note in strings(&other["notes"]) {
                let seen = ["first", "second"]
                    .iter()
                    .any(|f| shared[*f].as_str().unwrap_or_default().contains(&note))
                    || mapped.contains(&note);
                if seen {
                    wrong.push(format!("{instance} reads {note} of {}", other["instance"]));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
