//! End-to-end checks of the sandbox launcher. They need root (namespaces, cgroups,
//! mounts) and skip with a message otherwise.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tern_sandbox::{
    CapacityAccount, Depth, ExitStatus, LaunchSpec, Launcher, Reservation, Resources, Room,
    SandboxConfig, SandboxLauncher, UidRange,
};

struct Fixture {
    launcher: SandboxLauncher,
    _state: tempfile::TempDir,
    code: tempfile::TempDir,
    boot: tempfile::TempDir,
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn world_readable_tempdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    dir
}

fn fixture(test: &str) -> Option<Fixture> {
    fixture_with(test, true)
}

fn fixture_with(test: &str, tmp_on_disk: bool) -> Option<Fixture> {
    fixture_full(test, tmp_on_disk, 0)
}

/// `ahead`: sandboxes and runtimes built ahead per shape (at least and at most).
fn fixture_full(test: &str, tmp_on_disk: bool, ahead: usize) -> Option<Fixture> {
    let depth = match ahead {
        0 => Depth::OFF,
        n => Depth {
            floor: n,
            ceiling: n,
            keep: Duration::from_secs(600),
        },
    };
    fixture_depth(test, tmp_on_disk, depth)
}

fn fixture_depth(test: &str, tmp_on_disk: bool, depth: Depth) -> Option<Fixture> {
    if !is_root() {
        eprintln!("skipping {test}: the sandbox needs root");
        return None;
    }
    let state = tempfile::tempdir().expect("tempdir");
    let config = SandboxConfig {
        state_dir: state.path().join("sandbox"),
        server_id: format!("test-{}-{test}", std::process::id()).replace('_', "-"),
        uids: UidRange::lease_default().expect("lease a uid range"),
        keeper_exe: PathBuf::from(env!("CARGO_BIN_EXE_tern-sandbox-keeper")),
        tmp_on_disk,
        tmp_pool_depth: 2,
        sandboxes_ahead: depth,
        runtimes_ahead: depth,
        network: None,
    };
    let launcher = SandboxLauncher::new(config).expect("sandbox launcher");
    assert_eq!(
        launcher.tmp_on_disk(),
        tmp_on_disk,
        "disk-backed /tmp available"
    );
    launcher.cleanup_leftovers();
    Some(Fixture {
        launcher,
        _state: state,
        code: world_readable_tempdir(),
        boot: world_readable_tempdir(),
    })
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // Stops what the launcher keeps (held sandboxes, zygotes), then removes the
        // server's cgroups.
        self.launcher.shutdown();
    }
}

fn resources() -> Resources {
    Resources {
        memory_mb: 256,
        tmp_mb: 16,
        cpu_millis: 1000,
        cpu_period_us: tern_sandbox::cgroups::CPU_PERIOD_US,
        cpu_burst: false,
        max_pids: 64,
        max_open_files: 1024,
    }
}

impl Fixture {
    fn spec(&self, id: &str, program: &str, args: &[&str]) -> LaunchSpec {
        LaunchSpec {
            network: Default::default(),
            owner: String::new(),
            instance_id: id.into(),
            program: program.into(),
            args: args.iter().map(|s| s.to_string()).collect(),
            env: vec![
                ("PATH".into(), "/usr/bin:/bin".into()),
                ("LAMBDA_TASK_ROOT".into(), "/var/task".into()),
            ],
            code_dir: self.code.path().to_path_buf(),
            bootstrap_dir: self.boot.path().to_path_buf(),
            layer_dirs: vec![],
            runtime_dir: None,
            extra_ro_paths: vec![],
            resources: resources(),
            zygote: None,
            template: None,
            start_ahead_env: None,
        }
    }

    /// Runs to completion; returns status, output, setup and teardown time.
    fn run(&self, spec: &LaunchSpec) -> (ExitStatus, String, Duration, Duration) {
        let started = Instant::now();
        let launched = self.launcher.launch(spec).expect("launch");
        let setup = started.elapsed();
        let mut output = launched.output;
        let reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = output.read_to_string(&mut s);
            s
        });
        let status = launched.process.wait();
        let out = reader.join().expect("reader");
        let t = Instant::now();
        launched.process.cleanup();
        let teardown = t.elapsed();
        (status, out, setup, teardown)
    }
}

/// Waits for an instance that must reach its Runtime API listener once; returns its exit
/// status and output.
fn wait_connected(
    listener: std::net::TcpListener,
    mut output: std::fs::File,
    process: &dyn tern_sandbox::InstanceProcess,
) -> (ExitStatus, String) {
    let accepter = std::thread::spawn(move || listener.accept().map(|_| ()));
    let status = process.wait();
    let mut out = String::new();
    output.read_to_string(&mut out).expect("output");
    accepter
        .join()
        .expect("accept thread")
        .expect("accept from inside the sandbox");
    (status, out)
}

fn cgroup_dirs(server_id: &str, instance: &str) -> Vec<PathBuf> {
    ["memory", "pids", "cpu", "unified", ""]
        .iter()
        .map(|h| {
            Path::new("/sys/fs/cgroup")
                .join(h)
                .join("tern")
                .join(server_id)
                .join(instance)
        })
        .collect()
}

const PROBE: &str = r#"
echo "uid=$(id -u)"
touch /x 2>&1; echo "touch_rc=$?"
echo hi > /tmp/probe && echo "tmp=writable"
for p in /etc/shadow /root /home /work /sys/fs /var/lib; do [ -e $p ] && echo "present=$p"; done
echo "init=$(tr '\0' ' ' < /proc/1/cmdline)"
echo "hostname=$(cat /proc/sys/kernel/hostname)"
(exec 4<>/dev/tcp/127.0.0.1/5432) 2>/dev/null && echo "pg=reachable" || echo "pg=unreachable"
exec 3<>/dev/tcp/127.0.0.1/9001 && echo "api=connected"
grep CapEff /proc/self/status
echo "uid_map=$(cat /proc/self/uid_map | tr -s ' ')"
mount -t tmpfs x /tmp 2>&1; echo "mount_rc=$?"
echo "passwd=$(wc -l < /etc/passwd)"
echo "env=$(env | sort | tr '\n' ' ')"
echo "cwd=$(pwd)"
"#;

/// What [`PROBE`] must report from inside any sandbox.
fn assert_probe_isolated(out: &str) {
    assert!(out.contains("uid=0\n"), "{out}");
    assert!(out.contains("Read-only file system"), "{out}");
    assert!(out.contains("tmp=writable"), "{out}");
    assert!(!out.contains("present="), "{out}");
    assert!(
        out.contains("__sandbox-keeper"),
        "pid 1 is the sandbox init: {out}"
    );
    assert!(
        !out.contains("init=/sbin/init") && !out.contains("init=/init"),
        "{out}"
    );
    let host_name = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
    assert!(
        !out.contains(&format!("hostname={}", host_name.trim())),
        "{out}"
    );
    assert!(out.contains("pg=unreachable"), "{out}");
    assert!(out.contains("api=connected"), "{out}");
    assert!(out.contains("CapEff:\t0000000000000000"), "{out}");
    // Root inside is one unprivileged host uid from this launcher's leased range.
    let map: Vec<u64> = out
        .lines()
        .find_map(|l| l.strip_prefix("uid_map="))
        .map(|m| {
            m.split_whitespace()
                .filter_map(|w| w.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        map.len() == 3
            && map[0] == 0
            && map[1] >= u64::from(tern_sandbox::uid_range::FIRST_UID)
            && map[2] == 1,
        "{out}"
    );
    assert!(!out.contains("mount_rc=0"), "{out}");
    assert!(out.contains("passwd=2"), "{out}");
    assert!(
        out.contains("AWS_LAMBDA_RUNTIME_API=127.0.0.1:9001"),
        "{out}"
    );
    assert!(out.contains("cwd=/var/task"), "{out}");
}

#[test]
fn runtime_is_isolated_and_reaches_only_the_runtime_api() {
    let Some(f) = fixture("isolated") else { return };
    let spec = f.spec("probe-1", "/bin/bash", &["-c", PROBE]);
    let started = Instant::now();
    let launched = f.launcher.launch(&spec).expect("launch");
    let setup = started.elapsed();
    let (status, out) = wait_connected(
        launched.runtime_api_listener,
        launched.output,
        &*launched.process,
    );
    eprintln!("{out}");
    assert_eq!(status, ExitStatus::Code(0), "{out}");
    assert_probe_isolated(&out);
    let t = Instant::now();
    launched.process.cleanup();
    let teardown = t.elapsed();
    eprintln!(
        "setup {:?} (launch until exec), teardown {:?}",
        setup, teardown
    );
    for dir in cgroup_dirs(&f.launcher.config().server_id, "probe-1") {
        assert!(!dir.exists(), "{} left behind", dir.display());
    }
    assert!(!f.launcher.config().state_dir.join("probe-1").exists());
}

#[test]
fn python_and_node_run_inside() {
    let Some(f) = fixture("interpreters") else {
        return;
    };
    let (status, out, setup, teardown) =
        f.run(&f.spec("py-1", "/usr/bin/python3", &["-c", "print(1)"]));
    assert_eq!((status, out.as_str()), (ExitStatus::Code(0), "1\n"));
    eprintln!("python: setup {setup:?}, teardown {teardown:?}");
    let (status, out, setup, teardown) =
        f.run(&f.spec("node-1", "/usr/bin/node", &["-e", "console.log(1)"]));
    assert_eq!((status, out.as_str()), (ExitStatus::Code(0), "1\n"));
    eprintln!("node: setup {setup:?}, teardown {teardown:?}");
}

#[test]
fn launch_setup_is_fast() {
    let Some(f) = fixture("timing") else { return };
    let mut setups = Vec::new();
    let mut teardowns = Vec::new();
    for i in 0..10 {
        let (status, _, setup, teardown) = f.run(&f.spec(&format!("t-{i}"), "/bin/true", &[]));
        assert_eq!(status, ExitStatus::Code(0));
        setups.push(setup);
        teardowns.push(teardown);
    }
    setups.sort();
    teardowns.sort();
    eprintln!(
        "setup: min {:?} median {:?} max {:?}",
        setups[0], setups[5], setups[9]
    );
    eprintln!(
        "teardown: min {:?} median {:?} max {:?}",
        teardowns[0], teardowns[5], teardowns[9]
    );
}

#[test]
fn kill_ends_the_whole_instance_quickly() {
    let Some(f) = fixture("kill") else { return };
    let spec = f.spec("kill-1", "/bin/sh", &["-c", "sleep 100 & sleep 100 & wait"]);
    let launched = f.launcher.launch(&spec).expect("launch");
    std::thread::sleep(Duration::from_millis(50));
    let t = Instant::now();
    launched.process.kill();
    assert_eq!(launched.process.wait(), ExitStatus::Signal(libc::SIGKILL));
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    assert_eq!(launched.process.wait(), ExitStatus::Signal(libc::SIGKILL));
    launched.process.cleanup();
    launched.process.cleanup();
}

#[test]
fn exceeding_memory_is_an_oom_kill() {
    let Some(f) = fixture("oom") else { return };
    let mut spec = f.spec(
        "oom-1",
        "/usr/bin/python3",
        &["-c", "x = bytearray(400 * 1024 * 1024); print(len(x))"],
    );
    spec.resources.memory_mb = 64;
    let launched = f.launcher.launch(&spec).expect("launch");
    let status = launched.process.wait();
    assert_eq!(status, ExitStatus::Signal(libc::SIGKILL));
    assert!(launched.process.oom_killed());
    let peak = launched.process.memory_peak_bytes().expect("peak");
    assert!(peak > 32 * 1024 * 1024, "{peak}");
    launched.process.cleanup();
    assert!(launched.process.oom_killed(), "remembered after cleanup");
}

/// Loop devices whose backing file lies under `dir` (deleted or not).
fn loop_devices_backed_by(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/sys/block") else {
        return vec![];
    };
    let dir = dir.to_string_lossy().into_owned();
    entries
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("loop/backing_file")).ok())
        .filter(|backing| backing.starts_with(&dir))
        .collect()
}

#[test]
fn full_tmp_is_enospc_not_an_oom_kill_even_beyond_memory() {
    let Some(f) = fixture("tmpdisk") else { return };
    let mut spec = f.spec(
        "tmpdisk-1",
        "/bin/sh",
        &[
            "-c",
            "ls -A /tmp; stat -c 'tmp=%u:%a' /tmp; df -k /tmp | tail -1; \
             dd if=/dev/zero of=/tmp/fill bs=1M count=200 2>&1; echo rc=$?; \
             rm /tmp/fill && dd if=/dev/zero of=/tmp/again bs=1M count=8 2>&1 | tail -1",
        ],
    );
    spec.resources.memory_mb = 64;
    spec.resources.tmp_mb = 128;
    let launched = f.launcher.launch(&spec).expect("launch");
    let mut output = launched.output;
    let mut out = String::new();
    let status = launched.process.wait();
    output.read_to_string(&mut out).expect("output");
    assert_eq!(status, ExitStatus::Code(0), "{out}");
    assert!(!launched.process.oom_killed(), "{out}");
    assert!(
        out.starts_with(
            "tmp=0:1777
"
        ),
        "empty /tmp owned by root: {out}"
    );
    let size_kb: u64 = out
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("df line");
    assert!(size_kb >= 128 * 1024, "/tmp at least its size: {out}");
    assert!(out.contains("No space left on device"), "{out}");
    assert!(
        out.contains("8388608 bytes"),
        "space is back after rm: {out}"
    );
    launched.process.cleanup();
    let state = f.launcher.config().state_dir.clone();
    drop(f);
    let deadline = Instant::now() + Duration::from_secs(2);
    while !loop_devices_backed_by(&state).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(loop_devices_backed_by(&state), Vec::<String>::new());
    let images: Vec<_> = std::fs::read_dir(&state)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(images.is_empty(), "left in the state dir: {images:?}");
}

#[test]
fn tmpfs_fallback_keeps_a_full_tmp_from_becoming_an_oom_kill() {
    let Some(f) = fixture_with("tmpfs", false) else {
        return;
    };
    let mut spec = f.spec(
        "tmpfs-1",
        "/bin/sh",
        &[
            "-c",
            "dd if=/dev/zero of=/tmp/fill bs=1M count=100 2>&1; echo rc=$?",
        ],
    );
    spec.resources.memory_mb = 32;
    spec.resources.tmp_mb = 64;
    let (status, out, _, _) = f.run(&spec);
    assert_eq!(status, ExitStatus::Code(0), "{out}");
    assert!(out.contains("No space left on device"), "{out}");
}

#[test]
fn the_instance_learns_no_host_path_from_mounts_or_its_init() {
    let Some(f) = fixture("mountinfo") else {
        return;
    };
    let spec = f.spec(
        "mi-1",
        "/bin/sh",
        &["-c", "cat /proc/self/mountinfo /proc/1/cmdline"],
    );
    let (status, out, _, _) = f.run(&spec);
    assert_eq!(status, ExitStatus::Code(0), "{out}");
    assert!(out.contains(" /var/task "), "{out}");
    for host_path in [
        f.code.path(),
        f.boot.path(),
        f.launcher.config().state_dir.as_path(),
        Path::new(env!("CARGO_BIN_EXE_tern-sandbox-keeper")),
    ] {
        assert!(
            !out.contains(&*host_path.to_string_lossy()),
            "{} visible inside: {out}",
            host_path.display()
        );
    }
}

#[test]
fn parents_of_extra_trees_can_be_passed_but_not_listed() {
    let Some(f) = fixture("extra") else { return };
    let host = tempfile::Builder::new()
        .tempdir_in("/var/tmp")
        .expect("tempdir");
    std::fs::set_permissions(host.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let tree = host.path().join("versions/3.11");
    std::fs::create_dir_all(&tree).expect("mkdir");
    std::fs::write(tree.join("marker"), "inside\n").expect("write");
    std::fs::write(host.path().join("secret"), "host\n").expect("write");
    let parent = host.path().display().to_string();
    let script = format!(
        "cat {0}/versions/3.11/marker; ls {0} >/dev/null 2>&1 || echo parent=unlistable; \
         ls {0}/versions >/dev/null 2>&1 || echo versions=unlistable; \
         cat {0}/secret 2>/dev/null || echo secret=absent",
        parent
    );
    let mut spec = f.spec("extra-1", "/bin/sh", &["-c", &script]);
    spec.extra_ro_paths = vec![tree];
    let (status, out, _, _) = f.run(&spec);
    assert_eq!(status, ExitStatus::Code(0), "{out}");
    assert_eq!(
        out,
        "inside\nparent=unlistable\nversions=unlistable\nsecret=absent\n"
    );
}

#[test]
fn filling_tmp_gives_enospc() {
    let Some(f) = fixture("tmpfull") else { return };
    let spec = f.spec(
        "tmp-1",
        "/bin/sh",
        &[
            "-c",
            "dd if=/dev/zero of=/tmp/fill bs=1M count=64 2>&1; echo rc=$?",
        ],
    );
    let (status, out, _, _) = f.run(&spec);
    assert_eq!(status, ExitStatus::Code(0), "{out}");
    assert!(out.contains("No space left on device"), "{out}");
}

#[test]
fn failing_exec_is_a_launch_error() {
    let Some(f) = fixture("noexec") else { return };
    let err = f
        .launcher
        .launch(&f.spec("bad-1", "/var/task/missing", &[]))
        .err()
        .expect("must fail");
    assert!(err.to_string().contains("missing"), "{err}");
    for dir in cgroup_dirs(&f.launcher.config().server_id, "bad-1") {
        assert!(!dir.exists(), "{} left behind", dir.display());
    }
}

#[test]
fn seccomp_denies_namespace_and_ptrace_syscalls() {
    let Some(f) = fixture("seccomp") else { return };
    let script = r#"
import ctypes, errno, os, socket
libc = ctypes.CDLL(None, use_errno=True)
def err(rc): return errno.errorcode.get(ctypes.get_errno(), "?") if rc < 0 else "ok"
print("unshare", err(libc.unshare(0x10000000)))
print("ptrace", err(libc.ptrace(16, 1, 0, 0)))
print("clone3", err(libc.syscall(435, 0, 0)))
try:
    socket.socket(socket.AF_INET, socket.SOCK_RAW, 1); print("raw ok")
except OSError as e: print("raw", errno.errorcode[e.errno])
try:
    socket.socket(socket.AF_INET, socket.SOCK_STREAM); print("tcp ok")
except OSError as e: print("tcp", errno.errorcode[e.errno])
pid = os.fork()
if pid == 0: os._exit(7)
print("fork", os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
"#;
    let (status, out, _, _) = f.run(&f.spec("sc-1", "/usr/bin/python3", &["-c", script]));
    assert_eq!(status, ExitStatus::Code(0), "{out}");
    for line in [
        "unshare EPERM",
        "ptrace EPERM",
        "clone3 ENOSYS",
        "raw EPERM",
        "tcp ok",
        "fork 7",
    ] {
        assert!(out.contains(line), "missing {line:?} in {out}");
    }
}

/// The program a test zygote pre-imports: `main()` probes the instance it runs in.
/// Started ahead of its instance, it reads the instance's environment from
/// `TERN_CONFIG_FD` as tern's bootstraps do: one line, then end of file once the code
/// is mounted.
const ZYGOTE_PROBE: &str = r#"
import ctypes, errno, json, os, socket, sys
PREIMPORTED = True

def read_config():
    if "TERN_CONFIG_FD" not in os.environ:
        return
    fd = int(os.environ["TERN_CONFIG_FD"])
    line = b""
    while not line.endswith(b"\n"):
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        line += chunk
    os.environ.clear()
    os.environ.update(json.loads(line)["env"])
    while os.read(fd, 65536):
        pass
    os.close(fd)
    os.chdir(os.environ["LAMBDA_TASK_ROOT"])

def main():
    read_config()
    libc = ctypes.CDLL(None, use_errno=True)
    def err(rc): return errno.errorcode.get(ctypes.get_errno(), "?") if rc < 0 else "ok"
    status = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines())
    for key in ("Uid", "CapEff", "CapBnd", "NoNewPrivs", "Seccomp"):
        print(key.lower() + "=" + " ".join(status[key].split()))
    print("pid=%d" % os.getpid())
    print("started=%s" % open("/proc/self/stat").read().rsplit(")", 1)[1].split()[19])
    print("procs=%d" % len([p for p in os.listdir("/proc") if p.isdigit()]))
    print("init=" + open("/proc/1/cmdline").read().replace("\0", " "))
    print("argv=%s" % sys.argv)
    print("main=%s" % (sys.modules["__main__"].__name__))
    print("cwd=" + os.getcwd())
    print("secret_env=%s" % os.environ.get("SECRET"))
    print("hostname=" + socket.gethostname())
    print("cgroup=" + open("/proc/self/cgroup").read().replace("\n", " "))
    print("unshare", err(libc.unshare(0x10000000)))
    try:
        open("/x", "w")
    except OSError as e:
        print("root", errno.errorcode[e.errno])
    open("/tmp/probe", "w").write("x")
    s = socket.create_connection(("127.0.0.1", 9001), timeout=5)
    print("api=connected")
    s.close()
    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=1)
        print("pg=reachable")
    except OSError:
        print("pg=unreachable")
    sys.stdout.flush()
    if os.environ.get("EAT_MEMORY"):
        hog = [bytearray(1 << 20) for _ in range(1024)]
        print("survived %d" % len(hog))
    sys.stdout.flush()
    sys.exit(3)

if __name__ == "__main__":
    main()
"#;

impl Fixture {
    fn zygote_spec(&self, id: &str, key: &str) -> LaunchSpec {
        let program = self.boot.path().join("probe.py");
        std::fs::write(&program, ZYGOTE_PROBE).expect("write probe");
        let mut spec = self.spec(id, "/usr/bin/python3", &["-S", "/opt/tern/probe.py"]);
        spec.env.push(("SECRET".into(), format!("secret-of-{id}")));
        spec.zygote = Some(tern_sandbox::ZygoteSpec {
            key: key.into(),
            env: vec![("PATH".into(), "/usr/bin:/bin".into())],
            program,
        });
        spec
    }
}

#[test]
fn zygote_forked_runtime_is_as_isolated_as_an_execd_one() {
    let Some(f) = fixture("zygote") else { return };
    let spec = f.zygote_spec("zy-1", "tenant-a");
    let launched = f.launcher.launch(&spec).expect("launch");
    let (status, out) = wait_connected(
        launched.runtime_api_listener,
        launched.output,
        &*launched.process,
    );
    eprintln!("{out}");
    assert_eq!(status, ExitStatus::Code(3), "{out}");
    for line in [
        "capeff=0000000000000000",
        "capbnd=0000000000000000",
        "nonewprivs=1",
        "seccomp=2",
        "pid=2",
        "procs=2",
        "argv=['/opt/tern/probe.py']",
        "main=__main__",
        "cwd=/var/task",
        "secret_env=secret-of-zy-1",
        "hostname=tern",
        "cgroup=",
        "unshare EPERM",
        "root EROFS",
        "api=connected",
        "pg=unreachable",
    ] {
        assert!(out.contains(line), "missing {line:?} in {out}");
    }
    assert!(out.contains("__sandbox-keeper"), "pid 1 is the init: {out}");
    assert!(out.contains("uid=0 0 0 0"), "{out}");
    assert!(!out.contains("cgroup=0::/tern"), "host cgroup path: {out}");
    launched.process.cleanup();
    for dir in cgroup_dirs(&f.launcher.config().server_id, "zy-1") {
        assert!(!dir.exists(), "{} left behind", dir.display());
    }

    // A second child of the same zygote sees its own environment only, and a memory
    // hog in it is an OOM kill reported as such.
    let mut spec = f.zygote_spec("zy-2", "tenant-a");
    spec.resources.memory_mb = 64;
    spec.env.push(("EAT_MEMORY".into(), "1".into()));
    let (status, out, _, _) = f.run(&spec);
    assert!(out.contains("secret_env=secret-of-zy-2"), "{out}");
    assert!(!out.contains("survived"), "{out}");
    assert_eq!(status, ExitStatus::Signal(libc::SIGKILL), "{out}");
}

#[test]
fn killing_a_zygote_forked_instance_ends_it() {
    let Some(f) = fixture("zygote-kill") else {
        return;
    };
    let mut spec = f.zygote_spec("zk-1", "tenant-a");
    spec.env.push(("EAT_MEMORY".into(), String::new()));
    std::fs::write(
        f.boot.path().join("probe.py"),
        "import time\ndef main():\n    time.sleep(600)\n",
    )
    .expect("write");
    let launched = f.launcher.launch(&spec).expect("launch");
    let t = Instant::now();
    launched.process.kill();
    assert_eq!(launched.process.wait(), ExitStatus::Signal(libc::SIGKILL));
    assert!(t.elapsed() < Duration::from_secs(5));
    launched.process.cleanup();
}

/// Host pids of this process's zygotes started with `marker` in their environment (their
/// runtimes share both, but not the parent).
fn zygote_pids(marker: &str) -> Vec<i32> {
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
                .filter(|pid| {
                    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
                    let stat =
                        std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                    let ppid = stat
                        .rsplit(')')
                        .next()
                        .and_then(|r| r.split_whitespace().nth(1));
                    cmdline.ends_with(b"\0-\0")
                        && ppid == Some(me.as_str())
                        && String::from_utf8_lossy(&environ).contains(marker)
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_dead_zygote_is_replaced_and_running_instances_survive_it() {
    let Some(f) = fixture("zygote-dies") else {
        return;
    };
    let marker = format!("TERN_TEST_ZYGOTE={}", std::process::id());
    let spec = |id: &str| {
        let mut s = f.zygote_spec(id, "tenant-z");
        std::fs::write(
            f.boot.path().join("probe.py"),
            "import time\ndef main():\n    print('up', flush=True)\n    time.sleep(1)\n    print('done', flush=True)\n",
        )
        .expect("write");
        if let Some(z) = s.zygote.as_mut() {
            z.env
                .push(("TERN_TEST_ZYGOTE".into(), std::process::id().to_string()));
        }
        s
    };
    let first = f.launcher.launch(&spec("zd-1")).expect("launch");
    let zygotes = zygote_pids(&marker);
    assert_eq!(zygotes.len(), 1, "one zygote: {zygotes:?}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(zygotes[0]),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the zygote");
    // The runtime it forked belongs to the instance, not to the zygote: it carries on,
    // and the instance ends when it does (its exit status died with the zygote).
    let waiter = {
        let process = first.process.clone();
        std::thread::spawn(move || (process.wait(), Instant::now()))
    };
    let mut out = String::new();
    let mut output = first.output;
    output.read_to_string(&mut out).expect("output");
    let output_closed = Instant::now();
    assert_eq!(out, "up\ndone\n");
    let (status, ended) = waiter.join().expect("waiter");
    assert_eq!(status, ExitStatus::Unknown);
    assert!(
        ended + Duration::from_millis(100) >= output_closed,
        "wait returned before the runtime ended"
    );
    first.process.cleanup();
    // The next launch starts a new zygote.
    let (status, out, _, _) = f.run(&spec("zd-2"));
    assert_eq!((status, out.as_str()), (ExitStatus::Code(0), "up\ndone\n"));
    let again = zygote_pids(&marker);
    assert_eq!(again.len(), 1, "{again:?}");
    assert_ne!(again[0], zygotes[0]);
}

/// When `pid` started, in clock ticks since boot.
fn start_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let after_comm = stat.rsplit(')').next().expect("stat fields");
    // Field 22 overall; the 20th after the command name.
    after_comm
        .split_whitespace()
        .nth(19)
        .and_then(|v| v.parse().ok())
        .expect("starttime")
}

/// Waits until the launcher holds `n` sandboxes built ahead of time.
fn wait_held(f: &Fixture, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while f.launcher.held_count() < n {
        assert!(
            Instant::now() < deadline,
            "held sandboxes: {}",
            f.launcher.held_count()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A capacity account with room for a fixed number of sandboxes built ahead.
struct Slots(std::sync::Arc<std::sync::atomic::AtomicUsize>);

struct Slot(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl CapacityAccount for Slots {
    fn reserve_built_ahead(&self) -> Option<Reservation> {
        use std::sync::atomic::Ordering;
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .ok()
            .map(|_| Reservation::new(Slot(self.0.clone())))
    }

    fn reserve_template(&self, _memory_mb: u32) -> Option<Reservation> {
        self.reserve_built_ahead()
    }

    fn build_permit(&self) -> Option<Reservation> {
        Some(Reservation::new(Pace))
    }
}

/// Builds ahead are not paced in these tests.
struct Pace;

impl Room for Pace {}

impl Room for Slot {}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }
}

#[test]
fn held_sandboxes_count_in_the_capacity_account_and_give_their_room_back() {
    use std::sync::atomic::Ordering;
    let Some(f) = fixture_full("held-account", true, 2) else {
        return;
    };
    // Room for one sandbox built ahead, though the pool would keep two.
    let free = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(1));
    f.launcher
        .set_capacity_account(std::sync::Arc::new(Slots(free.clone())));
    let first = f.spec("ha-1", "/bin/true", &[]);
    assert_eq!(f.launcher.claim_held(&first), None);
    let launched = f.launcher.launch(&first).expect("launch");
    launched.process.wait();
    launched.process.cleanup();
    wait_held(&f, 1);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(f.launcher.held_count(), 1, "built past the account's room");
    assert_eq!(free.load(Ordering::Acquire), 0);
    // Dropping it to make room gives the room back before returning.
    assert!(f.launcher.drop_built_ahead());
    assert_eq!(free.load(Ordering::Acquire), 1);
    assert_eq!(f.launcher.held_count(), 0);
    assert!(!f.launcher.drop_built_ahead());
    // A launch that takes one gives its room back too (its instance counts itself).
    let mut spec = f.spec("ha-2", "/bin/true", &[]);
    assert_eq!(f.launcher.claim_held(&spec), None);
    wait_held(&f, 1);
    spec.instance_id = f.launcher.claim_held(&spec).expect("a held sandbox");
    let launched = f.launcher.launch(&spec).expect("launch");
    launched.process.wait();
    launched.process.cleanup();
    // The one room is free again, or taken by a held sandbox built since: never lost.
    let deadline = Instant::now() + Duration::from_secs(5);
    while free.load(Ordering::Acquire) + f.launcher.held_count() != 1 {
        assert!(
            Instant::now() < deadline,
            "room lost: {} free, {} held",
            free.load(Ordering::Acquire),
            f.launcher.held_count()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn held_sandboxes_are_built_ahead_and_as_isolated() {
    let Some(f) = fixture_full("held", true, 2) else {
        return;
    };
    // The first launch of a shape builds its own sandbox; asking for a held one makes
    // the launcher keep some of that shape.
    let first = f.spec("hd-1", "/bin/bash", &["-c", PROBE]);
    assert_eq!(f.launcher.claim_held(&first), None);
    let launched = f.launcher.launch(&first).expect("launch");
    launched.process.kill();
    launched.process.wait();
    launched.process.cleanup();
    wait_held(&f, 2);

    // The next one starts its runtime in a held sandbox, as isolated as a fresh one.
    std::thread::sleep(Duration::from_millis(50));
    let mut spec = f.spec("hd-2", "/bin/bash", &["-c", PROBE]);
    let id = f.launcher.claim_held(&spec).expect("a held sandbox");
    assert_eq!(f.launcher.held_count(), 1);
    spec.instance_id = id.clone();
    let now = now_ticks();
    let launched = f.launcher.launch(&spec).expect("launch");
    let init_started = start_ticks(launched.process.pid());
    assert!(
        init_started < now,
        "the instance's init started at tick {init_started}, not before the launch ({now})"
    );
    // Its cgroups and root carry the claimed id.
    assert!(f.launcher.config().state_dir.join(&id).exists());
    let (status, out) = wait_connected(
        launched.runtime_api_listener,
        launched.output,
        &*launched.process,
    );
    assert_eq!(status, ExitStatus::Code(0), "{out}");
    assert_probe_isolated(&out);
    launched.process.cleanup();

    launched.process.cleanup();
    for dir in cgroup_dirs(&f.launcher.config().server_id, &id) {
        assert!(!dir.exists(), "{} left behind", dir.display());
    }

    // A zygote forks into one as well.
    wait_held(&f, 2);
    let mut zy = f.zygote_spec("hd-3", "tenant-h");
    zy.instance_id = f.launcher.claim_held(&zy).expect("a held sandbox");
    let (status, out, _, _) = f.run(&zy);
    assert_eq!(status, ExitStatus::Code(3), "{out}");
    for line in [
        "capeff=0000000000000000",
        "seccomp=2",
        "pid=2",
        "secret_env=secret-of-hd-3",
        "api=connected",
    ] {
        assert!(out.contains(line), "missing {line:?} in {out}");
    }

    // A runtime that cannot start is a launch error, as without held sandboxes.
    wait_held(&f, 2);
    let mut bad = f.spec("hd-4", "/var/task/missing", &[]);
    bad.instance_id = f.launcher.claim_held(&bad).expect("a held sandbox");
    let err = f.launcher.launch(&bad).err().expect("must fail");
    assert!(err.to_string().contains("missing"), "{err}");
}

#[test]
fn runtimes_forked_ahead_of_time_wait_for_their_instance() {
    let Some(f) = fixture_full("prefork", true, 2) else {
        return;
    };
    let first = f.zygote_spec("pf-1", "tenant-p");
    assert_eq!(f.launcher.claim_held(&first), None);
    let (status, _, _, _) = f.run(&first);
    assert_eq!(status, ExitStatus::Code(3));
    let deadline = Instant::now() + Duration::from_secs(10);
    while f.launcher.started_ahead_count() < 1 {
        assert!(
            Instant::now() < deadline,
            "nothing was forked ahead of time"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(50));

    let mut spec = f.zygote_spec("pf-2", "tenant-p");
    spec.instance_id = f.launcher.claim_held(&spec).expect("a forked runtime");
    let now = now_ticks();
    let (status, out, _, _) = f.run(&spec);
    eprintln!("{out}");
    assert_eq!(status, ExitStatus::Code(3), "{out}");
    let started = probe_started(&out);
    assert!(
        started < now,
        "the runtime started at {started}, not before the launch ({now})"
    );
    // Its environment and code arrived with the instance; it is as confined as any.
    for line in [
        "secret_env=secret-of-pf-2",
        "cwd=/var/task",
        "capeff=0000000000000000",
        "nonewprivs=1",
        "seccomp=2",
        "pid=2",
        "unshare EPERM",
        "root EROFS",
        "api=connected",
        "pg=unreachable",
    ] {
        assert!(out.contains(line), "missing {line:?} in {out}");
    }

    // Another namespace's launch never gets a runtime forked for this one.
    let deadline = Instant::now() + Duration::from_secs(10);
    while f.launcher.started_ahead_count() < 1 {
        assert!(Instant::now() < deadline, "no refill");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(50));
    let mut other = f.zygote_spec("pf-3", "tenant-q");
    let before = now_ticks();
    if let Some(id) = f.launcher.claim_held(&other) {
        other.instance_id = id;
    }
    let (status, out, _, _) = f.run(&other);
    assert_eq!(status, ExitStatus::Code(3), "{out}");
    let started = probe_started(&out);
    assert!(
        started >= before,
        "tenant-q got a runtime forked before its launch"
    );
    assert!(out.contains("secret_env=secret-of-pf-3"), "{out}");
}

/// When the probe's runtime started (its `started=` line), in clock ticks since boot.
fn probe_started(out: &str) -> u64 {
    out.lines()
        .find_map(|l| l.strip_prefix("started="))
        .and_then(|v| v.parse().ok())
        .expect("start tick")
}

/// Clock ticks since boot, as a new process's start time shows them.
fn now_ticks() -> u64 {
    let mut probe = std::process::Command::new("/bin/sleep")
        .arg("1")
        .spawn()
        .expect("spawn");
    let ticks = start_ticks(probe.id());
    let _ = probe.kill();
    let _ = probe.wait();
    ticks
}

/// Two layers for the layer tests: B overrides A's `python/shared.txt`; A also carries a
/// `tern/` directory, which must not show under the bootstraps at /opt/tern.
fn two_layers() -> (tempfile::TempDir, tempfile::TempDir) {
    let write = |dir: &Path, rel: &str, text: &str| {
        let path = dir.join(rel);
        let parent = path.parent().expect("a parent");
        std::fs::create_dir_all(parent).expect("mkdir");
        for d in parent.ancestors().take_while(|d| d.starts_with(dir)) {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        std::fs::write(&path, text).expect("write");
    };
    let (a, b) = (world_readable_tempdir(), world_readable_tempdir());
    write(a.path(), "python/shared.txt", "a");
    write(a.path(), "python/only_a.txt", "a");
    write(a.path(), "tern/from_layer.txt", "a");
    write(b.path(), "python/shared.txt", "b");
    (a, b)
}

/// Prints what the instance sees at /opt (the Python version runs in a zygote's child).
const LAYERS_PROBE_SH: &str = r#"
echo "shared=$(cat /opt/python/shared.txt)"
echo "only_a=$(cat /opt/python/only_a.txt)"
echo "tern=$(ls /opt/tern | tr '\n' ,)"
grep -q ' /opt ' /proc/self/mountinfo && echo "opt=mounted"
"#;
const LAYERS_PROBE_PY: &str = r#"
import os, sys

def main():
    # Started ahead: its config descriptor ends once the code and layers are mounted.
    fd = os.environ.get("TERN_CONFIG_FD")
    if fd is not None:
        while os.read(int(fd), 65536):
            pass
    print("shared=" + open("/opt/python/shared.txt").read())
    print("only_a=" + open("/opt/python/only_a.txt").read())
    print("tern=" + "".join(n + "," for n in sorted(os.listdir("/opt/tern"))))
    sys.stdout.flush()

if __name__ == "__main__":
    main()
"#;

fn assert_layers_seen(out: &str, tern_listing: &str) {
    for line in ["shared=b", "only_a=a", &format!("tern={tern_listing}")] {
        assert!(out.contains(line), "missing {line:?} in {out}");
    }
    assert!(
        !out.contains("from_layer"),
        "a layer showed under /opt/tern: {out}"
    );
}

#[test]
fn layers_show_at_opt_in_order_under_the_bootstraps_on_every_start_path() {
    let Some(f) = fixture_full("layers", true, 2) else {
        return;
    };
    std::fs::write(f.boot.path().join("boot-marker"), "x").expect("marker");
    let (a, b) = two_layers();
    let layers = vec![a.path().to_path_buf(), b.path().to_path_buf()];
    let with_layers = |mut spec: LaunchSpec| {
        spec.layer_dirs = layers.clone();
        spec
    };

    // Built with its layers: the mount plan. (Asking for a held sandbox first makes the
    // launcher keep some of this shape for the next case.)
    let first = with_layers(f.spec("ly-1", "/bin/bash", &["-c", LAYERS_PROBE_SH]));
    assert_eq!(f.launcher.claim_held(&first), None);
    let (status, out, _, _) = f.run(&first);
    assert_eq!(status, ExitStatus::Code(0), "{out}");
    assert_layers_seen(&out, "boot-marker,");
    assert!(out.contains("opt=mounted"), "{out}");

    // A held sandbox, built before anyone knew its layers: attached at launch.
    wait_held(&f, 2);
    let mut spec = with_layers(f.spec("ly-2", "/bin/bash", &["-c", LAYERS_PROBE_SH]));
    spec.instance_id = f.launcher.claim_held(&spec).expect("a held sandbox");
    let (status, out, _, _) = f.run(&spec);
    assert_eq!(status, ExitStatus::Code(0), "{out}");
    assert_layers_seen(&out, "boot-marker,");

    // A runtime a zygote forked into a held sandbox ahead of time: its layers come with
    // the instance, before it reads its environment.
    let program = f.boot.path().join("layers_probe.py");
    std::fs::write(&program, LAYERS_PROBE_PY).expect("write probe");
    let zygote_spec = |id: &str| {
        let mut spec =
            with_layers(f.spec(id, "/usr/bin/python3", &["-S", "/opt/tern/layers_probe.py"]));
        spec.zygote = Some(tern_sandbox::ZygoteSpec {
            key: "tenant-layers".into(),
            env: vec![("PATH".into(), "/usr/bin:/bin".into())],
            program: program.clone(),
        });
        spec
    };
    // (The first such launch may take a held sandbox for the zygote's child: attached
    // as above, then forked into.)
    let mut first = zygote_spec("ly-3");
    if let Some(id) = f.launcher.claim_held(&first) {
        first.instance_id = id;
    }
    let (status, out, _, _) = f.run(&first);
    assert_eq!(status, ExitStatus::Code(0), "{out}");
    assert_layers_seen(&out, "boot-marker,layers_probe.py,");
    let deadline = Instant::now() + Duration::from_secs(10);
    while f.launcher.started_ahead_count() < 1 {
        assert!(
            Instant::now() < deadline,
            "nothing was forked ahead of time"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(50));
    let mut forked = zygote_spec("ly-4");
    forked.instance_id = f.launcher.claim_held(&forked).expect("a forked runtime");
    let now = now_ticks();
    let launched = f.launcher.launch(&forked).expect("launch");
    assert!(
        start_ticks(launched.process.pid()) < now,
        "the sandbox was built before the launch"
    );
    let mut output = launched.output;
    let mut out = String::new();
    let _ = output.read_to_string(&mut out);
    assert_eq!(launched.process.wait(), ExitStatus::Code(0), "{out}");
    launched.process.cleanup();
    assert_layers_seen(&out, "boot-marker,layers_probe.py,");
}

/// The handler module of the template tests: its init leaves a mark in /tmp and in
/// memory; a fork's first request line shows it reached the invocation loop.
const TEMPLATE_HANDLER: &str = r#"
import os
INIT_PID = os.getpid()
with open("/tmp/from-init", "w") as f:
    f.write("init")

def handler(event, context):
    return {"init_pid": INIT_PID}
"#;

impl Fixture {
    fn template_spec(&self, id: &str, revision: &str) -> LaunchSpec {
        std::fs::write(
            self.boot.path().join("bootstrap.py"),
            include_str!("../../../runtimes/python/bootstrap.py"),
        )
        .expect("write bootstrap");
        std::fs::write(self.code.path().join("app.py"), TEMPLATE_HANDLER).expect("handler");
        let mut spec = self.spec(id, "/usr/bin/python3", &["-S", "/opt/tern/bootstrap.py"]);
        spec.env.push(("_HANDLER".into(), "app.handler".into()));
        spec.template = Some(tern_sandbox::TemplateSpec {
            function: "app".into(),
            revision: revision.into(),
            init_env: vec![],
            resources: resources(),
        });
        spec
    }
}

/// Reads the first request line a launched runtime sends to its Runtime API.
fn first_request_line(launched: &tern_sandbox::Launched) -> String {
    use std::io::BufRead;
    launched
        .runtime_api_listener
        .set_nonblocking(false)
        .expect("blocking");
    let (conn, _) = launched.runtime_api_listener.accept().expect("accept");
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut line = String::new();
    std::io::BufReader::new(conn)
        .read_line(&mut line)
        .expect("request line");
    line
}

#[test]
fn instances_fork_from_a_template_each_in_namespaces_of_their_own() {
    let Some(f) = fixture_full("template-fork", true, 1) else {
        return;
    };
    f.launcher
        .set_capacity_account(std::sync::Arc::new(Slots(std::sync::Arc::new(
            std::sync::atomic::AtomicUsize::new(4),
        ))));
    // The first launch starts as usual and has the template built meanwhile.
    let first = f
        .launcher
        .launch(&f.template_spec("tpl-a", "r1"))
        .expect("launch");
    assert!(first_request_line(&first).starts_with("GET /2018-06-01/runtime/invocation/next"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while f.launcher.template_count() == 0 {
        assert!(Instant::now() < deadline, "no template within 20 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut forks = Vec::new();
    for i in 0..3 {
        let started = Instant::now();
        let launched = f
            .launcher
            .launch(&f.template_spec(&format!("tpl-fork-{i}"), "r1"))
            .expect("fork");
        eprintln!("fork {i}: {:?}", started.elapsed());
        let line = first_request_line(&launched);
        assert!(
            line.starts_with("GET /2018-06-01/runtime/invocation/next"),
            "{line}"
        );
        // Forked: pid 1 of its sandbox is the template's interpreter, not a keeper's init.
        let comm = std::fs::read_to_string(format!("/proc/{}/comm", launched.process.pid()))
            .expect("comm");
        assert!(
            comm.starts_with("python"),
            "fork {i} was not forked: {comm}"
        );
        forks.push(launched);
    }
    // A launch that claims first gets an instance forked ahead (already in its cgroups).
    let deadline = Instant::now() + Duration::from_secs(10);
    let claimed = loop {
        let spec = f.template_spec("unused", "r1");
        if let Some(id) = f.launcher.claim_held(&spec) {
            break id;
        }
        assert!(
            Instant::now() < deadline,
            "nothing forked ahead within 10 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(claimed.starts_with('t'), "{claimed}");
    let started = Instant::now();
    let ahead = f
        .launcher
        .launch(&f.template_spec(&claimed, "r1"))
        .expect("forked ahead");
    eprintln!("forked ahead: {:?}", started.elapsed());
    let line = first_request_line(&ahead);
    assert!(
        line.starts_with("GET /2018-06-01/runtime/invocation/next"),
        "{line}"
    );
    forks.push(ahead);
    for launched in [first].into_iter().chain(forks) {
        launched.process.kill();
        assert!(matches!(
            launched.process.wait(),
            ExitStatus::Signal(_) | ExitStatus::Unknown | ExitStatus::Code(_)
        ));
        launched.process.cleanup();
    }
}

/// A runtime that can be started ahead of its instance: it reads the instance's
/// environment from `TERN_CONFIG_FD` (the zygote probe's `read_config`), lists its
/// descriptors, then probes as the zygote probe's `main()` (whose `read_config` then
/// finds nothing to do).
const EXEC_AHEAD_PROBE: &str = r#"
read_config()
print("fds=%s" % sorted(int(f) for f in os.listdir("/proc/self/fd")))
print("exec_env_secret=%s" % (b"SECRET=" in open("/proc/self/environ", "rb").read()))
"#;

impl Fixture {
    fn exec_ahead_spec(&self, id: &str) -> LaunchSpec {
        let body = ZYGOTE_PROBE.replace("if __name__ == \"__main__\":\n    main()\n", "");
        std::fs::write(
            self.boot.path().join("ahead.py"),
            format!("{body}\n{EXEC_AHEAD_PROBE}\nmain()\n"),
        )
        .expect("write probe");
        let mut spec = self.spec(id, "/usr/bin/python3", &["-S", "/opt/tern/ahead.py"]);
        spec.env.push(("SECRET".into(), format!("secret-of-{id}")));
        spec.start_ahead_env = Some(vec![
            ("PATH".into(), "/usr/bin:/bin".into()),
            ("LAMBDA_TASK_ROOT".into(), "/var/task".into()),
        ]);
        spec
    }
}

fn wait_started_ahead(f: &Fixture, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while f.launcher.started_ahead_count() < n {
        assert!(
            Instant::now() < deadline,
            "{} of {n} runtimes started ahead",
            f.launcher.started_ahead_count()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Node's runtime, and Python's where no zygote forks it, are exec'd ahead of their
/// instance into a held sandbox, and read the instance's environment from a descriptor
/// once a launch takes them.
#[test]
fn runtimes_execd_ahead_of_time_read_their_instance_from_the_config_descriptor() {
    let Some(f) = fixture_depth(
        "exec-ahead",
        true,
        Depth {
            floor: 1,
            ceiling: 3,
            keep: Duration::from_secs(600),
        },
    ) else {
        return;
    };
    let first = f.exec_ahead_spec("ea-1");
    f.launcher.prepare(&first);
    wait_started_ahead(&f, 1);
    std::thread::sleep(Duration::from_millis(100));

    let mut spec = f.exec_ahead_spec("ea-2");
    spec.instance_id = f
        .launcher
        .claim_held(&spec)
        .expect("a runtime started ahead");
    let now = now_ticks();
    let (status, out, _, _) = f.run(&spec);
    eprintln!("{out}");
    assert_eq!(status, ExitStatus::Code(3), "{out}");
    assert!(probe_started(&out) < now, "not started ahead: {out}");
    for line in [
        "secret_env=secret-of-ea-2",
        // The variables it was exec'd with are the shape's, none of the function's.
        "exec_env_secret=False",
        // The config descriptor is closed once read; nothing else was passed.
        "fds=[0, 1, 2, 3]",
        "cwd=/var/task",
        "capeff=0000000000000000",
        "nonewprivs=1",
        "seccomp=2",
        "pid=2",
        "unshare EPERM",
        "root EROFS",
        "api=connected",
        "pg=unreachable",
    ] {
        assert!(out.contains(line), "missing {line:?} in {out}");
    }

    // Another start environment is another shape: it never gets this one's runtimes.
    wait_started_ahead(&f, 1);
    let mut other = f.exec_ahead_spec("ea-3");
    other.start_ahead_env = Some(vec![("PATH".into(), "/bin".into())]);
    let before = now_ticks();
    if let Some(id) = f.launcher.claim_held(&other) {
        other.instance_id = id;
    }
    let (status, out, _, _) = f.run(&other);
    assert_eq!(status, ExitStatus::Code(3), "{out}");
    assert!(probe_started(&out) >= before, "served ahead: {out}");

    // Demand deepens the shape's pool up to its ceiling, and no further.
    for i in 0..6 {
        f.launcher.prepare(&f.exec_ahead_spec(&format!("ea-d{i}")));
    }
    // Three of this shape, and the other shape's floor of one.
    wait_started_ahead(&f, 4);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(f.launcher.started_ahead_count(), 4, "past the ceiling");
}
