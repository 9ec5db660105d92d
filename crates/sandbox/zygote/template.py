"""tern post-init template (stdlib only; see crates/sandbox/src/template.rs).

Runs inside a function's sandbox, in the runtime process that has just run the
function's init (imported its handler). The server prepends `drop.py` to this
text and sends it in its hello; the bootstrap execs it and calls `serve()`.

`serve()` never returns in the template itself. Per request from the server it
forks a child and returns in that child's runtime, with the instance's
environment, so that the bootstrap goes on to serve invocations with the
handler already imported.

Each child first leaves the template's namespaces: a user namespace of its own
(the template's ids, Lambda's sandbox user 993:990, mapped to themselves)
owning new mount, network, ipc, uts and pid namespaces. It moves its own /tmp disk over the template's /tmp, brings
its loopback up and binds its own Runtime API listener. Then it drops every
privilege as any runtime does: capabilities, a Landlock domain of its own (with
signal scoping where the kernel has it: siblings in other domains can neither
ptrace-read nor signal it), and the builtin seccomp filter stacked on the
template's. Once the server has moved it into the instance's cgroups it forks
pid 1 of its pid namespace, which forks the runtime and reaps orphans.

Before its first fork it checks what the init left behind: an open file, socket
or pipe, a shared writable mapping, a running thread or a child process would be
shared by (or lost to, or left beside) every fork, where instances started as usual each have their own; such
a template reports it and ends.

Protocol (SOCK_SEQPACKET; JSON, one message per datagram):

  server -> template  {"seccomp": [hex BPF program, ...], "drop": {...},
                       "scoped": Landlock scopes, "port": Runtime API port}
  template -> server  {"ready": true} | {"error": text}        (init is done)
  server -> template  {"cwd": dir} + fds: report socket, output pipe,
                      config memfd, status pipe[, detached /tmp mount]
  template -> server  {"pid": n} + a pidfd of the child | {"error": text}
  server -> child     b"go" on the report socket (it is in its cgroups)
  child -> server     {"ok": true} + fds: Runtime API listener, pidfd of its
                      pid 1 | {"error": text}

The runtime's raw wait status (4 bytes, little endian) goes to the status pipe.
Closing the report socket kills the child's instance.
"""

import fcntl
import json
import select
import signal
import socket
import stat
import sys

AT_FDCWD = -100
MOVE_MOUNT_F_EMPTY_PATH = 0x4
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1
IFF_RUNNING = 0x40


def serve(ctl, hello):
    """Forks instances from this process. Returns only in a fork's runtime."""
    policy = hello["drop"]
    programs = _seccomp_programs(hello["seccomp"])
    scoped = int(hello.get("scoped") or 0)
    port = int(hello["port"])
    del hello
    left = _left_by_init(ctl.fileno())
    if left is not None:
        # Forks would share it, where instances started as usual each have their own:
        # no template, rather than instances that see each other's state.
        ctl.send(json.dumps({"error": "the init left %s, which every instance forked "
                                      "from it would share" % (left,)}).encode())
        _flush_and_exit(0)
    # Forks are reaped by the kernel: their end is their pid 1's business.
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    ctl.send(b'{"ready":true}')
    while True:
        try:
            msg, fds, _, _ = socket.recv_fds(ctl, 1 << 16, 5)
        except InterruptedError:
            continue
        if not msg:
            # The server dropped this template. Its forks live in our pid namespace,
            # whose init keeps them; we only stop forking.
            _flush_and_exit(0)
        if len(fds) not in (4, 5):
            for f in fds:
                os.close(f)
            ctl.send(json.dumps({"error": "expected 4 or 5 descriptors"}).encode())
            continue
        try:
            req = json.loads(msg)
            cwd = str(req["cwd"])
        except (ValueError, KeyError, TypeError) as e:
            for f in fds:
                os.close(f)
            ctl.send(json.dumps({"error": "bad request: %s" % (e,)}).encode())
            continue
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            pid = os.fork()
        except OSError as e:
            for f in fds:
                os.close(f)
            ctl.send(json.dumps({"error": "fork: %s" % (e,)}).encode())
            continue
        if pid == 0:
            # The control socket is the template's: a runtime holding it could take
            # the next fork's descriptors.
            ctl.close()
            del ctl
            return _child(fds, cwd, policy, programs, scoped, port)
        for f in fds:
            os.close(f)
        try:
            pidfd = os.pidfd_open(pid)
        except OSError as e:
            ctl.send(json.dumps({"error": "the fork ended at once: %s" % (e,)}).encode())
            continue
        try:
            socket.send_fds(ctl, [json.dumps({"pid": pid}).encode()], [pidfd])
        finally:
            os.close(pidfd)


def _left_by_init(ctl_fd):
    """What the init left behind that forks would share with each other (an open file,
    socket or pipe, a shared writable mapping) or lose (a thread), or a process it left
    running; None if nothing."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd in (0, 1, 2, ctl_fd):
            continue
        try:
            mode = os.fstat(fd).st_mode
            target = os.readlink("/proc/self/fd/%d" % fd)
        except OSError:
            continue  # the descriptor listdir used
        if stat.S_ISCHR(mode):
            continue  # /dev/null, /dev/urandom: nothing of an instance in them
        return "a descriptor open (%s)" % (target,)
    threads = len(os.listdir("/proc/self/task"))
    if threads > 1:
        return "%d threads running" % (threads - 1,)
    # /proc shows this sandbox's processes (its init, this one, and whatever the init
    # started and left running: it would outlive the template's purpose beside forks).
    me = os.getpid()
    others = sorted(int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) not in (1, me))
    if others:
        return "a process running (pid %d)" % (others[0],)
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split()
            if len(fields) > 1 and fields[1][1] == "w" and fields[1][3] == "s":
                return "a shared writable mapping (%s)" % (" ".join(fields[5:]) or "anonymous",)
    return None


def _flush_and_exit(code):
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


def _child(fds, cwd, policy, programs, scoped, port):
    """The fork, still in the template's namespaces. Returns only in the runtime."""
    output, config, status = fds[1:4]
    tmp = fds[4] if len(fds) > 4 else None
    report = socket.socket(fileno=fds[0])
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    step = ["leave the template"]
    try:
        listener = _leave_template(tmp, port, policy, step)
        if tmp is not None:
            os.close(tmp)
        step[0] = "drop privileges"
        _drop(policy, programs, scoped)
        # Wait until the server has moved this process into the instance's cgroups,
        # so that everything from here on is charged there.
        step[0] = "wait for the server"
        if report.recv(16) != b"go":
            os._exit(126)
        step[0] = "fork pid 1"
        pid1 = os.fork()
    except BaseException as e:  # noqa: BLE001 - report any setup failure, then die
        try:
            report.send(json.dumps({"error": "template fork: %s: %s" % (step[0], e)}).encode())
        finally:
            os._exit(126)
    if pid1 == 0:
        listener.close()
        report.close()
        return _init(output, config, status, cwd)
    os.close(output)
    os.close(config)
    os.close(status)
    try:
        pidfd = os.pidfd_open(pid1)
        socket.send_fds(report, [json.dumps({"ok": True}).encode()],
                        [listener.fileno(), pidfd])
    except BaseException:  # noqa: BLE001 - the server gave up on this instance
        os._exit(126)
    listener.close()
    _watch(report, pidfd, pid1)


def _leave_template(tmp, port, policy, step):
    """Own namespaces, /tmp, loopback and Runtime API listener. Returns the listener.
    `step[0]` names the step under way, for the error report."""
    uid, gid = os.getuid(), os.getgid()
    step[0] = "new namespaces"
    _check(libc.unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC
                        | CLONE_NEWUTS | CLONE_NEWPID), "unshare")
    # The template's ids map to themselves (mapping root would take CAP_SETFCAP
    # outside; the template runs as Lambda's sandbox user, not root).
    maps = (("setgroups", "deny"), ("uid_map", "%d %d 1" % (uid, uid)),
            ("gid_map", "%d %d 1" % (gid, gid)))
    for name, text in maps:
        step[0] = "write " + name
        with open("/proc/self/" + name, "w") as f:
            f.write(text)
    step[0] = "mount /tmp"
    if tmp is not None:
        move_mount = ctypes.c_long(policy["syscalls"]["move_mount"])
        _check(libc.syscall(move_mount, ctypes.c_int(tmp), b"", ctypes.c_int(AT_FDCWD),
                            b"/tmp", ctypes.c_uint(MOVE_MOUNT_F_EMPTY_PATH)), "mount /tmp")
    step[0] = "bring the loopback up"
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sh22x", b"lo", IFF_UP | IFF_RUNNING))
    finally:
        s.close()
    step[0] = "listen for the Runtime API"
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(128)
    return listener


def _drop(policy, programs, scoped):
    """Every privilege, as an exec'd runtime drops them (no_new_privs and the locked
    securebits are the template's already)."""
    _drop_capabilities(policy)
    if not _restrict_filesystem(policy, scoped):
        # The domain is what keeps siblings from reading each other through /proc.
        raise SetupError("Landlock is unavailable; a template's forks need it")
    _install_seccomp(programs)
    # Not dumpable: /proc/<pid> of this process is its own root's only.
    _prctl(PR_SET_DUMPABLE, 0, what="dumpable")


def _watch(report, pidfd, pid1):
    """Outside the instance's pid namespace: ends it when the server closes the
    report socket, and ends with it."""
    poller = select.poll()
    poller.register(report.fileno(), select.POLLIN)
    poller.register(pidfd, select.POLLIN)
    while True:
        try:
            events = poller.poll()
        except InterruptedError:
            continue
        if any(fd == pidfd for fd, _ in events):
            break
        try:
            more = report.recv(16)
        except OSError:
            more = b""
        if not more:
            try:
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            except OSError:
                pass
            break
    try:
        os.waitpid(pid1, 0)
    except ChildProcessError:
        pass
    os._exit(0)


def _init(output, config, status, cwd):
    """pid 1 of the instance's pid namespace: forks the runtime, reaps every orphan
    until the runtime ends, reports how it ended. Returns only in the runtime."""
    try:
        runtime = os.fork()
    except OSError:
        os._exit(126)
    if runtime == 0:
        os.close(status)
        return _runtime(output, config, cwd)
    os.close(output)
    os.close(config)
    while True:
        try:
            pid, raw = os.waitpid(-1, 0)
        except InterruptedError:
            continue
        except ChildProcessError:
            raw = 0x7F00
            break
        if pid == runtime:
            break
    try:
        os.write(status, struct.pack("<i", raw))
    finally:
        os._exit(0)


def _runtime(output, config, cwd):
    """The instance's runtime. Returns its environment to the bootstrap."""
    try:
        os.setsid()
        null = os.open("/dev/null", os.O_RDWR)
        if null != 0:
            os.dup2(null, 0)
            os.close(null)
        os.dup2(output, 1)
        os.dup2(output, 2)
        os.close(output)
        try:
            os.lseek(config, 0, os.SEEK_SET)
        except OSError:
            pass
        chunks = []
        while True:
            chunk = os.read(config, 65536)
            if not chunk:
                break
            chunks.append(chunk)
        os.close(config)
        env = json.loads(b"".join(chunks)).get("env") or {}
        os.chdir(cwd)
    except BaseException:  # noqa: BLE001 - the server gave up on this instance
        os._exit(126)
    return env
