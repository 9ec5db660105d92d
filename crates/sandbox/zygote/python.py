"""tern Python zygote (stdlib only; see crates/sandbox/src/zygote.rs).

A warm interpreter that never runs function code. It pre-imports one program
(the runtime bootstrap) and then, per request, forks a child into a sandbox
that the keeper already built (namespaces, cgroups, root filesystem, user
namespace with its id maps). The child drops every privilege exactly as an
exec'd runtime does (no_new_privs, securebits, capabilities, Landlock,
seccomp) and calls the program's `main()` with the instance's environment.
What that drop is (securebits, Landlock rules, syscall numbers) comes from the
server, which applies the same policy to exec'd runtimes: none of it is
defined here.

Started as `python3 -S -` (no `site`: nothing of the host's site-packages is
imported) with `drop.py` and then this text on stdin, and the control
socket (SOCK_SEQPACKET) as fd 3. Messages are JSON, one per datagram:

  server -> zygote  {"preload": host path, "preload_as": path inside,
                     "seccomp": [hex BPF program, ...],
                     "drop": the rest of the privilege drop (privileges.rs):
                       {"securebits": n, "syscalls": {"capset": n, ...},
                        "landlock": {"handled_by_abi": [rights, ...],
                                     "rules": [[path, rights], ...]}}}
  zygote -> server  {"ready": true} | {"error": text}
  server -> zygote  {"cgroup_procs": [...], "max_open_files": n, "cwd": dir,
                     "runtime_api": host:port of the instance's Runtime API}
                    + fds: init pidfd, output pipe, config, status pipe
  config: a memfd holding {"env": {...}}, the instance's environment; or, for
  a runtime forked ahead of its instance, a pipe that the program reads itself
  (named by TERN_CONFIG_FD): one such JSON line once an instance takes it, end
  of file once the instance's code is mounted.
  zygote -> server  {"pid": host pid of the runtime} + its pidfd | {"error": text}

When the runtime exits, its raw wait status (4 bytes, little endian) is
written to its status pipe. The zygote is the subreaper of its runtimes; if it
dies first, the server still sees the runtime end through the pidfd.

The zygote never reads an instance's environment (the child reads it from
its config after the fork), so nothing of one function is left in the memory
the next child inherits.
"""

import atexit
import ctypes
import gc
import json
import os
import resource
import select
import signal
import socket
import stat
import struct
import sys
import time
import traceback
import types

CTL_FD = 3


def _read_all(fd):
    try:
        os.lseek(fd, 0, os.SEEK_SET)  # a memfd; a pipe is read as it comes
    except OSError:
        pass
    chunks = []
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _runtime(req, fds, report, policy, program, program_as):
    """In the sandbox (pid namespace included): become the runtime. Never returns."""
    pidfd, output, config, status = fds
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    try:
        os.setsid()
        null = os.open("/dev/null", os.O_RDWR)
        if null != 0:
            os.dup2(null, 0)
            os.close(null)
        os.dup2(output, 1)
        os.dup2(output, 2)
        # Keep only what this runtime needs: the zygote's other descriptors (other
        # runtimes' status pipes, its control socket) must not stay open here while it
        # waits for its instance.
        low, high = sorted((config, report))
        os.closerange(3, low)
        os.closerange(low + 1, high)
        os.closerange(high + 1, 1 << 20)
        _prctl(PR_SET_NO_NEW_PRIVS, 1, what="no_new_privs")
        drop = policy["drop"]
        _prctl(PR_SET_SECUREBITS, drop["securebits"], what="securebits")
        _drop_capabilities(drop)
        _restrict_filesystem(drop)
        # Changing uids made this process undumpable (its /proc files root's); an exec
        # would have made it dumpable again, as the exec'd runtime is.
        _prctl(PR_SET_DUMPABLE, 1, what="dumpable")
        _install_seccomp(policy["seccomp"])
    except BaseException as e:  # noqa: BLE001 - report any setup failure, then die
        os.write(report, ("error:%s\n" % (e,)).encode())
        os._exit(126)
    os.write(report, b"ok\n")
    os.close(report)
    ahead = (config, req["cwd"], req.get("runtime_api"))
    del req, fds, policy
    # Unwind the zygote's stack before any function code runs, and (for a runtime
    # forked ahead of time) before it waits for its instance, so that freeing the
    # zygote's frames is not paid on the request path: they hold the request that
    # forked this child (host cgroup paths, another instance's id), the zygote's hello
    # (the data dir) and its table of sibling host pids, all reachable from
    # sys._getframe(). Only what the runtime needs travels up.
    raise _BecomeRuntime(ahead, program, program_as)


class _BecomeRuntime(BaseException):
    """Raised in a forked runtime to unwind every zygote frame up to the module level,
    where the runtime then starts on a clean stack. A BaseException, so no `except
    Exception` on the way swallows it."""

    def __init__(self, ahead, program, program_as):
        super().__init__()
        self.ahead = ahead
        self.program = program
        self.program_as = program_as


def _run_runtime(ahead, program, program_as):
    """From here on this process is indistinguishable from `python3 -S <program_as>`
    started with the instance's environment. Never returns."""
    config, cwd, runtime_api = ahead
    del ahead
    if stat.S_ISFIFO(os.fstat(config).st_mode):
        # A runtime forked ahead of its instance: the program reads the instance's
        # environment from the config pipe itself, as an exec'd one does, and warms up
        # while it waits (its own code, no function's).
        env = dict(os.environ)
        env["AWS_LAMBDA_RUNTIME_API"] = runtime_api
        env["TERN_CONFIG_FD"] = str(config)
    else:
        # The instance's environment, in the config memfd.
        try:
            cfg = json.loads(_read_all(config))
            os.chdir(cwd)
            os.close(config)
        except BaseException:  # noqa: BLE001 - the server gave up on this instance
            os._exit(126)
        env = cfg.get("env") or {}
        del cfg
    os.environ.clear()
    os.environ.update(env)
    del env
    time.tzset()
    sys.argv[:] = [program_as]
    program.__name__ = "__main__"
    sys.modules["__main__"] = program
    code = 0
    try:
        program.main()
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            code = e.code or 0
        else:
            sys.stderr.write("%s\n" % (e.code,))
            code = 1
    except BaseException:  # noqa: BLE001 - an uncaught error ends the process as in Python
        traceback.print_exc()
        code = 1
    # What interpreter shutdown would do, without returning into the zygote's module.
    try:
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


def _enter(req, fds, report, policy, program, program_as):
    """The forked child, still on the host: join the sandbox, fork into its pid
    namespace. Never returns."""
    pidfd = fds[0]
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        nofile = max(int(req["max_open_files"]), 16)
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        os.setgroups([])
        for procs in req["cgroup_procs"]:
            with open(procs, "w") as f:
                f.write("0")
        _check(libc.setns(pidfd, CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC
                          | CLONE_NEWPID | CLONE_NEWNET), "enter the sandbox namespaces")
        _check(libc.setns(pidfd, CLONE_NEWUSER), "enter the user namespace")
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
        pid = os.fork()
    except BaseException as e:  # noqa: BLE001
        os.write(report, ("error:%s\n" % (e,)).encode())
        os._exit(126)
    if pid == 0:
        _runtime(req, fds, report, policy, program, program_as)
    os.write(report, ("pid:%d\n" % pid).encode())
    os._exit(0)


def _spawn(req, fds, policy, program, program_as):
    """Returns (pid, None) or (None, error text)."""
    report_r, report_w = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    child = os.fork()
    if child == 0:
        os.close(report_r)
        _enter(req, fds, report_w, policy, program, program_as)
    os.close(report_w)
    text = b""
    while True:
        chunk = os.read(report_r, 4096)
        if not chunk:
            break
        text += chunk
    os.close(report_r)
    os.waitpid(child, 0)
    pid, error, ok = None, None, False
    for line in text.decode(errors="replace").splitlines():
        if line.startswith("pid:"):
            pid = int(line[4:])
        elif line.startswith("error:"):
            error = line[6:]
        elif line == "ok":
            ok = True
    if pid is not None and error is None and not ok:
        error = "the runtime died during setup"
    if error is not None:
        return None, error
    return pid, None


def _load(path, name_as):
    with open(path, "rb") as f:
        source = f.read()
    # Not "__main__" yet: that would run the program now, in the zygote.
    module = types.ModuleType("__tern_program__")
    module.__file__ = name_as
    module.__builtins__ = __builtins__
    exec(compile(source, name_as, "exec"), module.__dict__)
    return module


def main():
    # `python3 -` puts "" first on sys.path; `python3 <file>` puts the file's
    # directory there, which the bootstrap removes itself. Neither belongs.
    if sys.path and sys.path[0] == "":
        del sys.path[0]
    ctl = socket.socket(fileno=CTL_FD)
    # No parent-death signal: it follows the thread that started us, and the server
    # starts zygotes from short-lived threads. The zygote ends when the control socket
    # does (the server exited or dropped it).
    _prctl(PR_SET_CHILD_SUBREAPER, 1, what="subreaper")
    hello = json.loads(ctl.recv(1 << 20))
    try:
        policy = {"seccomp": _seccomp_programs(hello["seccomp"]), "drop": hello["drop"]}
        program = _load(hello["preload"], hello["preload_as"])
    except Exception as e:  # noqa: BLE001
        ctl.send(json.dumps({"error": "preload: %s" % (e,)}).encode())
        return
    program_as = hello["preload_as"]
    # Everything loaded so far lives as long as the zygote: out of the collector's
    # reach, a collection in a runtime never writes to (and so copies) those pages.
    gc.freeze()
    # A SIGCHLD handler (so it wakes the loop) that only writes to the wakeup fd.
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    os.set_blocking(wake_r, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    ctl.send(b'{"ready":true}')

    runtimes = {}  # host pid -> status pipe
    poller = select.poll()
    poller.register(ctl.fileno(), select.POLLIN)
    poller.register(wake_r, select.POLLIN)
    while True:
        try:
            events = poller.poll()
        except InterruptedError:
            continue
        for fd, _ in events:
            if fd == wake_r:
                try:
                    while os.read(wake_r, 512):
                        pass
                except BlockingIOError:
                    pass
                _reap(runtimes)
                continue
            try:
                msg, fds, _, _ = socket.recv_fds(ctl, 1 << 20, 4)
            except InterruptedError:
                continue
            if not msg:
                return  # the server is gone
            if len(fds) != 4:
                for f in fds:
                    os.close(f)
                ctl.send(json.dumps({"error": "expected 4 descriptors"}).encode())
                continue
            try:
                req = json.loads(msg)
                pid, error = _spawn(req, fds, policy, program, program_as)
            except Exception as e:  # noqa: BLE001
                pid, error = None, "zygote: %s" % (e,)
            for f in fds[:3]:
                os.close(f)
            if pid is None:
                os.close(fds[3])
                ctl.send(json.dumps({"error": error}).encode())
            else:
                runtimes[pid] = fds[3]
                # Not reaped before _reap below, so the pid still names our runtime.
                pidfd = os.pidfd_open(pid)
                socket.send_fds(ctl, [json.dumps({"pid": pid}).encode()], [pidfd])
                os.close(pidfd)
            _reap(runtimes)


def _reap(runtimes):
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        fd = runtimes.pop(pid, None)
        if fd is not None:
            try:
                os.write(fd, struct.pack("<i", status))
            except OSError:
                pass
            os.close(fd)


_became = None
try:
    main()
except _BecomeRuntime as _become:
    # The traceback would keep every unwound frame alive; drop it with the exception.
    _become.__traceback__ = None
    _became = (_become.ahead, _become.program, _become.program_as)
if _became is not None:
    # No gc.collect(): it would cost milliseconds of every cold start, and the frames
    # hold no cycles, so dropping the traceback already freed them (the hostile suite
    # checks that nothing of them is left reachable).
    _run_runtime(*_became)
