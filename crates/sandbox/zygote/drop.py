"""The privilege-drop helpers of tern's Python-side process starters (stdlib only).

Shared by the zygote (`python.py`, on the host) and post-init templates
(`template.py`, in the sandbox): the server prepends this text to theirs. It
defines no policy: securebits, Landlock rules, syscall numbers and seccomp
programs all come from the server (crates/sandbox/src/privileges.rs), which
applies the same policy to exec'd runtimes.
"""

import ctypes
import os
import struct

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

# prctl options and kernel ABI constants (the same on every architecture).
PR_SET_DUMPABLE = 4
PR_SET_SECCOMP = 22
PR_CAPBSET_DROP = 24
PR_SET_SECUREBITS = 28
PR_SET_NO_NEW_PRIVS = 38
PR_SET_CHILD_SUBREAPER = 36
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
SECCOMP_MODE_FILTER = 2
LINUX_CAPABILITY_VERSION_3 = 0x20080522
LANDLOCK_CREATE_RULESET_VERSION = 1
LANDLOCK_RULE_PATH_BENEATH = 1

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long


class SetupError(Exception):
    pass


def _check(rc, what):
    if rc < 0:
        err = ctypes.get_errno()
        raise SetupError("%s: %s" % (what, os.strerror(err)))
    return rc


def _prctl(option, arg2=0, arg3=0, what="prctl"):
    return _check(
        libc.prctl(ctypes.c_int(option), ctypes.c_ulong(arg2), ctypes.c_ulong(arg3),
                   ctypes.c_ulong(0), ctypes.c_ulong(0)),
        what,
    )


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte),
                ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint), ("permitted", ctypes.c_uint),
                ("inheritable", ctypes.c_uint)]


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64)]


class _RulesetAttrScoped(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _seccomp_programs(hex_programs):
    programs = []
    for text in hex_programs:
        raw = bytes.fromhex(text)
        count = len(raw) // 8
        array = (_SockFilter * count)()
        for i in range(count):
            code, jt, jf, k = struct.unpack_from("=HBBI", raw, i * 8)
            array[i] = _SockFilter(code, jt, jf, k)
        programs.append((count, array))
    return programs


def _drop_capabilities(policy):
    cap = 0
    while cap < 64:
        if libc.prctl(PR_CAPBSET_DROP, ctypes.c_ulong(cap), 0, 0, 0) < 0:
            if ctypes.get_errno() == 22:  # EINVAL: past the last capability
                break
            _check(-1, "drop bounding capability %d" % cap)
        cap += 1
    _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, what="clear ambient capabilities")
    header = _CapHeader(LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    capset = ctypes.c_long(policy["syscalls"]["capset"])
    _check(libc.syscall(capset, ctypes.byref(header), data), "capset")


def _restrict_filesystem(policy, scoped=0):
    """Landlock, as the exec'd runtime gets it: best effort, like there. The kernel's
    ABI decides which of the policy's rights it handles. `scoped` (Landlock scopes,
    ABI 6 and later) also keeps signals and abstract sockets inside the new domain.
    Returns whether a domain was entered."""
    syscalls, landlock = policy["syscalls"], policy["landlock"]
    create = ctypes.c_long(syscalls["landlock_create_ruleset"])
    abi = libc.syscall(create, None, ctypes.c_size_t(0),
                       ctypes.c_uint(LANDLOCK_CREATE_RULESET_VERSION))
    if abi < 1:
        return False
    handled_by_abi = landlock["handled_by_abi"]
    handled = handled_by_abi[min(abi, len(handled_by_abi)) - 1]
    if scoped and abi >= 6:
        attr = _RulesetAttrScoped(handled, 0, scoped)
    else:
        attr = _RulesetAttr(handled)
    ruleset = libc.syscall(create, ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)),
                           ctypes.c_uint(0))
    if ruleset < 0:
        return False
    try:
        for path, access in landlock["rules"]:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                rule = _PathBeneath(access & handled, fd)
                if libc.syscall(ctypes.c_long(syscalls["landlock_add_rule"]),
                                ctypes.c_int(ruleset), ctypes.c_int(LANDLOCK_RULE_PATH_BENEATH),
                                ctypes.byref(rule), ctypes.c_uint(0)) < 0:
                    return False
            finally:
                os.close(fd)
        return libc.syscall(ctypes.c_long(syscalls["landlock_restrict_self"]),
                            ctypes.c_int(ruleset), ctypes.c_uint(0)) == 0
    finally:
        os.close(ruleset)


def _install_seccomp(programs):
    for count, array in programs:
        prog = _SockFprog(count, ctypes.cast(array, ctypes.POINTER(_SockFilter)))
        _prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(prog), what="seccomp")
