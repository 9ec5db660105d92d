//! The sandbox keeper: a freshly exec'd, single-threaded process that builds one instance.
//!
//! The server never forks itself (it is multi-threaded); it execs `<tern> __sandbox-keeper`
//! with the control socket on stdin and the output pipe on stdout. Three processes follow:
//!
//! - **keeper** (host pid ns, host root): creates the pid, net, uts and ipc namespaces,
//!   brings `lo` up, binds the Runtime API listener inside, sends it and a pidfd of the
//!   init back, writes the init's uid/gid maps, relays the exit status, and kills the init
//!   when the control socket closes.
//! - **init** (pid 1 of the sandbox): joins the cgroups, unshares mount and cgroup
//!   namespaces, builds the root from the mount plan and pivots into it, then becomes the
//!   instance's unprivileged host uid and creates a user namespace as that uid (root
//!   inside = that uid outside), forks the runtime and reaps zombies until it exits.
//! - **runtime**: drops every privilege (no_new_privs, capabilities, Landlock, seccomp)
//!   and execs the runtime program.

use std::ffi::CString;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;

use nix::sched::{unshare, CloneFlags};
use nix::sys::resource::{setrlimit, Resource};
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{Gid, Pid, Uid};

use seccompiler::BpfProgram;

use crate::mounts::{self, RealSyscalls};
use crate::protocol::{
    self, CommandReply, KeeperCommand, KeeperEvent, KeeperRequest, RuntimeStart,
};
use crate::{net, seccomp, sys};

/// `argv[1]` that turns the tern binary into a keeper.
pub const KEEPER_ARG: &str = "__sandbox-keeper";

/// Whether this process was started as a sandbox keeper. Check it first thing in
/// `main`, before any threads (such as a tokio runtime) exist.
pub fn is_keeper_invocation() -> bool {
    std::env::args_os().nth(1).is_some_and(|a| a == KEEPER_ARG)
}

/// Runs the keeper and exits. Call only when [`is_keeper_invocation`] is true.
pub fn run_keeper() -> ! {
    let code = match keeper_main() {
        Ok(()) => 0,
        Err(message) => {
            eprintln!("tern sandbox keeper: {message}");
            1
        }
    };
    std::process::exit(code)
}

type Result<T> = std::result::Result<T, String>;

/// Mounts the code of a sandbox built ahead: moves the detached tree `mount` over its
/// `/var/task`.
fn attach_code(pidfd: &OwnedFd, entered: &mut bool, mount: &OwnedFd) -> Result<()> {
    enter_mount_ns(pidfd, entered)?;
    let target = open_mount_point("/var/task")?;
    sys::move_mount_onto(mount.as_raw_fd(), target.as_raw_fd()).map_err(ctx("mount the code"))
}

/// Mounts the layers of a sandbox built ahead over its `/opt`, as the mount plan's
/// `OverlayLayers` step does: the bootstraps' mount at `/opt/tern` is copied and
/// detached, and the copy goes back on top of the layers (the overlay's top layer holds
/// an empty `tern` directory for it). A runtime that already opened a bootstrap file
/// keeps it: the copy is the same filesystem.
fn attach_layers(pidfd: &OwnedFd, entered: &mut bool, mount: &OwnedFd) -> Result<()> {
    enter_mount_ns(pidfd, entered)?;
    let bootstraps = sys::clone_mount(std::path::Path::new("/opt/tern"))
        .map_err(ctx("copy the /opt/tern mount"))?;
    nix::mount::umount2("/opt/tern", nix::mount::MntFlags::MNT_DETACH)
        .map_err(ctx("detach the /opt/tern mount"))?;
    let opt = open_mount_point("/opt")?;
    sys::move_mount_onto(mount.as_raw_fd(), opt.as_raw_fd()).map_err(ctx("mount the layers"))?;
    let tern = open_mount_point("/opt/tern")?;
    sys::move_mount_onto(bootstraps.as_raw_fd(), tern.as_raw_fd())
        .map_err(ctx("mount the bootstraps over the layers"))
}

/// Enters the instance's mount namespace (once; the keeper has no other use for the
/// host's). Also makes the instance's root our root, so paths are the instance's.
fn enter_mount_ns(pidfd: &OwnedFd, entered: &mut bool) -> Result<()> {
    if !*entered {
        nix::sched::setns(pidfd, CloneFlags::CLONE_NEWNS)
            .map_err(ctx("enter the mount namespace"))?;
        *entered = true;
    }
    Ok(())
}

fn open_mount_point(path: &'static str) -> Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| format!("open {path}: {e}"))
}

fn ctx<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> String {
    move |e| format!("{what}: {e}")
}

fn keeper_main() -> Result<()> {
    // SAFETY: the launcher hands us the control socket as stdin; nothing else in this
    // fresh process owns fd 0.
    let stdin = unsafe { OwnedFd::from_raw_fd(0) };
    let ctl = nix::fcntl::fcntl(stdin.as_raw_fd(), nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(3))
        .map_err(ctx("dup control socket"))?;
    // SAFETY: F_DUPFD_CLOEXEC returned a new descriptor that only we own.
    let ctl = unsafe { OwnedFd::from_raw_fd(ctl) };
    drop(stdin);
    // Keep fds 0 and 1 occupied (by /dev/null and the output pipe) so nothing lands there.
    sys::dev_null_onto(0).map_err(ctx("/dev/null as stdin"))?;

    // `passed`: descriptors the mount plan refers to (the detached /tmp mount).
    let Some((req, passed)) = protocol::recv::<KeeperRequest>(&ctl).map_err(ctx("read request"))?
    else {
        return Ok(()); // launcher gave up before sending anything
    };
    let filters = if req.template {
        seccomp::compile_template()
    } else {
        seccomp::compile_builtin()
    }
    .map_err(|e| e.to_string())?;

    // A socket in the host's network namespace stays there: the host end of the
    // sandbox's link is made through it once we are in the sandbox's.
    let mut host_netlink = match &req.network {
        Some(_) => Some(net::link::Netlink::open().map_err(ctx("open a netlink socket"))?),
        None => None,
    };
    unshare(
        CloneFlags::CLONE_NEWPID
            | CloneFlags::CLONE_NEWNET
            | CloneFlags::CLONE_NEWUTS
            | CloneFlags::CLONE_NEWIPC,
    )
    .map_err(ctx("unshare pid/net/uts/ipc"))?;
    nix::unistd::sethostname(&req.hostname).map_err(ctx("sethostname"))?;
    sys::set_loopback_up().map_err(ctx("bring lo up"))?;
    if let (Some(link), Some(host)) = (&req.network, host_netlink.as_mut()) {
        link.build(host)
            .map_err(ctx("connect the sandbox's network"))?;
    }
    drop(host_netlink);
    let listener =
        TcpListener::bind(("127.0.0.1", req.runtime_api_port)).map_err(ctx("bind runtime api"))?;

    let (to_keeper_r, to_keeper_w) = sys::pipe().map_err(ctx("pipe"))?;
    let (to_init_r, to_init_w) = sys::pipe().map_err(ctx("pipe"))?;
    let (err_r, err_w) = sys::pipe().map_err(ctx("pipe"))?;
    // A held sandbox's init takes its runtime later, over this socket.
    let (cmd_keeper, cmd_init) = if req.hold {
        let (k, i) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(ctx("socketpair"))?;
        (Some(k), Some(i))
    } else {
        (None, None)
    };

    let init = match sys::fork().map_err(ctx("fork init"))? {
        None => {
            drop((ctl, listener, to_keeper_r, to_init_w, err_r, cmd_keeper));
            let pipes = InitPipes {
                to_keeper: to_keeper_w,
                from_keeper: to_init_r,
                err: err_w,
            };
            run_init(&req, pipes, passed, cmd_init, &filters)
        }
        Some(pid) => pid,
    };
    drop(passed);
    drop((to_keeper_w, to_init_r, err_w, cmd_init));
    // The output pipe is for the runtime; holding it would delay EOF for the reader.
    sys::dev_null_onto(1).map_err(ctx("/dev/null as stdout"))?;

    // The init cannot be reaped before we wait for it, so this pidfd is the right one.
    let pidfd = sys::pidfd_open(init).map_err(ctx("pidfd_open"))?;
    protocol::send(
        &ctl,
        &KeeperEvent::Started { init_pid: init },
        &[listener.as_raw_fd(), pidfd.as_raw_fd()],
    )
    .map_err(ctx("send started"))?;
    drop(listener);

    let mut to_keeper = fs::File::from(to_keeper_r);
    let mut byte = [0u8; 1];
    if to_keeper.read(&mut byte).unwrap_or(0) == 1 {
        let mut to_init = fs::File::from(to_init_w);
        let answer = match write_id_maps(init, &req) {
            Ok(()) => b'G',
            Err(e) => {
                eprintln!("tern sandbox keeper: {e}");
                b'X'
            }
        };
        let _ = to_init.write_all(&[answer]);
    }

    let mut failure = String::new();
    let _ = fs::File::from(err_r).read_to_string(&mut failure);
    let event = if failure.is_empty() {
        KeeperEvent::Running
    } else {
        KeeperEvent::Failed { message: failure }
    };
    let _ = protocol::send(&ctl, &event, &[]);

    serve_until_init_exits(init, &pidfd, &ctl, cmd_keeper.as_ref());
    let status = match waitpid(Pid::from_raw(init), None) {
        Ok(WaitStatus::Exited(_, 0)) => {
            let mut raw = [0u8; 4];
            match to_keeper.read_exact(&mut raw) {
                Ok(()) => decode_wait_status(i32::from_le_bytes(raw)),
                Err(_) => KeeperEvent::Exited {
                    code: None,
                    signal: None,
                },
            }
        }
        Ok(WaitStatus::Exited(_, code)) => KeeperEvent::Exited {
            code: Some(code),
            signal: None,
        },
        Ok(WaitStatus::Signaled(_, signal, _)) => KeeperEvent::Exited {
            code: None,
            signal: Some(signal as i32),
        },
        _ => KeeperEvent::Exited {
            code: None,
            signal: None,
        },
    };
    let _ = protocol::send(&ctl, &status, &[]);
    Ok(())
}

/// Blocks until the init exits, answering the launcher's commands meanwhile; kills the
/// init if the launcher closes the control socket (or sends anything unreadable).
fn serve_until_init_exits(
    init: libc::pid_t,
    pidfd: &OwnedFd,
    ctl: &OwnedFd,
    to_init: Option<&OwnedFd>,
) {
    let mut watching_ctl = true;
    let mut entered_mount_ns = false;
    loop {
        let mut fds = vec![pidfd.as_fd()];
        if watching_ctl {
            fds.push(ctl.as_fd());
        }
        let ready = match sys::poll_readable(&fds) {
            Ok(ready) => ready,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        if ready[0] {
            return;
        }
        if !(watching_ctl && ready[1]) {
            continue;
        }
        match protocol::recv::<KeeperCommand>(ctl) {
            Ok(Some((KeeperCommand::AttachCode { layers: false }, fds))) if fds.len() == 2 => {
                let error = attach_code(pidfd, &mut entered_mount_ns, &fds[0]).err();
                let _ = protocol::send(&fds[1], &CommandReply { error }, &[]);
            }
            Ok(Some((KeeperCommand::AttachCode { layers: true }, fds))) if fds.len() == 3 => {
                let error = attach_code(pidfd, &mut entered_mount_ns, &fds[0])
                    .and_then(|()| attach_layers(pidfd, &mut entered_mount_ns, &fds[1]))
                    .err();
                let _ = protocol::send(&fds[2], &CommandReply { error }, &[]);
            }
            // The output, the runtime's config descriptor if it has one, the reply socket.
            Ok(Some((KeeperCommand::StartRuntime(start), fds)))
                if fds.len() == 2 || fds.len() == 3 =>
            {
                let (passed, reply) = fds.split_at(fds.len() - 1);
                let error = match to_init {
                    Some(to_init) => relay_start(to_init, &start, passed).err(),
                    None => Some("this sandbox already has its runtime".to_string()),
                };
                let _ = protocol::send(&reply[0], &CommandReply { error }, &[]);
            }
            _ => {
                watching_ctl = false;
                if sys::pidfd_send_signal(pidfd, libc::SIGKILL).is_err() {
                    let _ = nix::sys::signal::kill(Pid::from_raw(init), nix::sys::signal::SIGKILL);
                }
            }
        }
    }
}

/// Hands a runtime start to the held init and returns its answer.
fn relay_start(to_init: &OwnedFd, start: &RuntimeStart, fds: &[OwnedFd]) -> Result<()> {
    let raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
    protocol::send(to_init, start, &raw).map_err(ctx("reach the init"))?;
    match protocol::recv::<CommandReply>(to_init).map_err(ctx("hear from the init"))? {
        Some((CommandReply { error: None }, _)) => Ok(()),
        Some((CommandReply { error: Some(e) }, _)) => Err(e),
        None => Err("the init exited".to_string()),
    }
}

/// The instance's uid and gid inside its user namespace: root, or in a post-init
/// template's sandbox Lambda's sandbox user (its forks can map only a non-root id of
/// their own: the kernel wants CAP_SETFCAP to map root).
fn inside_ids(req: &KeeperRequest) -> (u32, u32) {
    if req.template {
        (crate::sandbox::TEMPLATE_UID, crate::sandbox::TEMPLATE_GID)
    } else {
        (0, 0)
    }
}

fn write_id_maps(pid: libc::pid_t, req: &KeeperRequest) -> Result<()> {
    let proc = format!("/proc/{pid}");
    let (uid, gid) = inside_ids(req);
    let (outside_uid, outside_gid) = (req.outside_uid, req.outside_gid);
    fs::write(format!("{proc}/setgroups"), "deny").map_err(ctx("write setgroups"))?;
    fs::write(
        format!("{proc}/uid_map"),
        format!("{uid} {outside_uid} 1\n"),
    )
    .map_err(ctx("write uid_map"))?;
    fs::write(
        format!("{proc}/gid_map"),
        format!("{gid} {outside_gid} 1\n"),
    )
    .map_err(ctx("write gid_map"))?;
    Ok(())
}

pub(crate) fn decode_wait_status(raw: i32) -> KeeperEvent {
    if libc::WIFEXITED(raw) {
        KeeperEvent::Exited {
            code: Some(libc::WEXITSTATUS(raw)),
            signal: None,
        }
    } else if libc::WIFSIGNALED(raw) {
        KeeperEvent::Exited {
            code: None,
            signal: Some(libc::WTERMSIG(raw)),
        }
    } else {
        KeeperEvent::Exited {
            code: None,
            signal: None,
        }
    }
}

struct InitPipes {
    /// init -> keeper: `U` once the user namespace exists, then the runtime's wait status.
    to_keeper: OwnedFd,
    /// keeper -> init: `G` once the id maps are written.
    from_keeper: OwnedFd,
    /// Setup failures, as text. Close-on-exec: EOF without text means the exec worked.
    err: OwnedFd,
}

/// Reports a setup failure to the keeper and exits.
fn fail(err: &OwnedFd, message: &str) -> ! {
    let _ = nix::unistd::write(err, message.as_bytes());
    sys::exit_now(126)
}

fn run_init(
    req: &KeeperRequest,
    pipes: InitPipes,
    mut passed: Vec<OwnedFd>,
    commands: Option<OwnedFd>,
    filters: &[BpfProgram],
) -> ! {
    // A template's control socket comes last, after what the mount plan refers to.
    let template = if req.template { passed.pop() } else { None };
    match init_setup(req, &pipes, &passed) {
        Ok(()) => {}
        Err(e) => fail(&pipes.err, &e),
    }
    drop(passed);
    let InitPipes {
        to_keeper,
        from_keeper,
        err,
    } = pipes;
    drop(from_keeper);
    if let Some(commands) = commands {
        // Setup worked: closing the error pipe tells the keeper so.
        drop(err);
        hold(req, to_keeper, commands, filters)
    }
    let runtime = match sys::fork() {
        Ok(Some(pid)) => pid,
        Ok(None) => {
            drop(to_keeper);
            run_runtime(req, err, filters, template)
        }
        Err(e) => fail(&err, &format!("fork runtime: {e}")),
    };
    drop(err);
    reap_until_runtime_exits(runtime, &to_keeper)
}

/// pid 1 duty: reaps everything until the runtime exits, then reports how it ended to
/// the keeper and exits.
fn reap_until_runtime_exits(runtime: libc::pid_t, to_keeper: &OwnedFd) -> ! {
    let mut raw: libc::c_int = 0;
    loop {
        // SAFETY: waitpid writes the status into `raw`, a valid c_int we own.
        let pid = unsafe { libc::waitpid(-1, &mut raw, 0) };
        if pid == runtime {
            break;
        }
        if pid < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            raw = 0x7f00; // no children left and none was the runtime: report code 127
            break;
        }
    }
    let _ = nix::unistd::write(to_keeper, &raw.to_le_bytes());
    sys::exit_now(0)
}

/// pid 1 of a held sandbox: reaps whatever is orphaned into the namespace and waits for
/// a runtime to start (a zygote's child needs nothing from it; a start request on
/// `commands` makes it start one as a normal init would).
fn hold(req: &KeeperRequest, to_keeper: OwnedFd, commands: OwnedFd, filters: &[BpfProgram]) -> ! {
    use nix::sys::signal::{SigSet, Signal};
    use nix::sys::signalfd::{SfdFlags, SignalFd};
    let mut chld = SigSet::empty();
    chld.add(Signal::SIGCHLD);
    // Blocked, SIGCHLD is only seen through the signalfd.
    let _ = chld.thread_block();
    let Ok(signals) = SignalFd::with_flags(&chld, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
    else {
        sys::exit_now(125)
    };
    let mut listening = true;
    loop {
        // SAFETY: waitpid with a null status pointer only reaps.
        while unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) } > 0 {}
        let mut fds = vec![signals.as_fd()];
        if listening {
            fds.push(commands.as_fd());
        }
        let ready = match sys::poll_readable(&fds) {
            Ok(ready) => ready,
            Err(_) => continue,
        };
        if ready[0] {
            while let Ok(Some(_)) = signals.read_signal() {}
        }
        if !(listening && ready[1]) {
            continue;
        }
        match protocol::recv::<RuntimeStart>(&commands) {
            Ok(Some((start, fds))) if fds.len() == 1 || fds.len() == 2 => {
                let mut fds = fds.into_iter();
                let output = fds.next().expect("checked: at least one descriptor");
                let config = fds.next();
                start_held_runtime(
                    req,
                    start,
                    (output, config),
                    &to_keeper,
                    &commands,
                    &chld,
                    filters,
                )
            }
            Ok(Some(_)) => {
                let error = Some("a runtime start takes one or two descriptors".to_string());
                let _ = protocol::send(&commands, &CommandReply { error }, &[]);
            }
            // The keeper is gone (it kills us too) or wrote garbage: stop listening.
            Ok(None) | Err(_) => listening = false,
        }
    }
}

/// Starts the runtime of a held sandbox, answers the keeper whether the exec worked,
/// then serves as the sandbox's init until the runtime exits.
fn start_held_runtime(
    req: &KeeperRequest,
    start: RuntimeStart,
    (output, config): (OwnedFd, Option<OwnedFd>),
    to_keeper: &OwnedFd,
    commands: &OwnedFd,
    blocked: &nix::sys::signal::SigSet,
    filters: &[BpfProgram],
) -> ! {
    let mut req = req.clone();
    req.program = start.program;
    req.args = start.args;
    req.env = start.env;
    let reply = |error: Option<String>| {
        let _ = protocol::send(commands, &CommandReply { error }, &[]);
    };
    if let Err(e) = nix::unistd::dup2(output.as_raw_fd(), 1) {
        reply(Some(format!("dup2 output: {e}")));
        sys::exit_now(126)
    }
    drop(output);
    let (err_r, err_w) = match sys::pipe() {
        Ok(p) => p,
        Err(e) => {
            reply(Some(format!("pipe: {e}")));
            sys::exit_now(126)
        }
    };
    let runtime = match sys::fork() {
        Ok(Some(pid)) => pid,
        Ok(None) => {
            drop(err_r);
            let _ = blocked.thread_unblock();
            run_runtime(&req, err_w, filters, config)
        }
        Err(e) => {
            reply(Some(format!("fork runtime: {e}")));
            sys::exit_now(126)
        }
    };
    drop((err_w, config));
    // The output is the runtime's now; ours would delay the reader's end of file.
    let _ = sys::dev_null_onto(1);
    let mut failure = String::new();
    let _ = fs::File::from(err_r).read_to_string(&mut failure);
    reply((!failure.is_empty()).then_some(failure));
    reap_until_runtime_exits(runtime, to_keeper)
}

fn init_setup(req: &KeeperRequest, pipes: &InitPipes, passed: &[OwnedFd]) -> Result<()> {
    sys::set_parent_death_signal(libc::SIGKILL).map_err(ctx("set pdeathsig"))?;
    for procs in &req.cgroup_procs {
        fs::write(procs, "0").map_err(|e| format!("join cgroup {}: {e}", procs.display()))?;
    }
    unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWCGROUP)
        .map_err(ctx("unshare mount/cgroup"))?;
    let passed: Vec<RawFd> = passed.iter().map(|fd| fd.as_raw_fd()).collect();
    mounts::apply(&req.mount_plan, &passed, &mut RealSyscalls)?;

    let nofile = req.max_open_files.max(16);
    setrlimit(Resource::RLIMIT_NOFILE, nofile, nofile).map_err(ctx("RLIMIT_NOFILE"))?;
    setrlimit(Resource::RLIMIT_CORE, 0, 0).map_err(ctx("RLIMIT_CORE"))?;
    // Host root's supplementary groups must go before setgroups is denied.
    nix::unistd::setgroups(&[]).map_err(ctx("setgroups"))?;

    // Become the instance's own host uid before creating the user namespace: the kernel
    // charges a namespace's per-user counts (inotify instances, pending signals, ...) to
    // its creator, so created as host root, one function could use up root's quotas.
    let (uid, gid) = (
        Uid::from_raw(req.outside_uid),
        Gid::from_raw(req.outside_gid),
    );
    nix::unistd::setresgid(gid, gid, gid).map_err(ctx("setresgid to the instance gid"))?;
    nix::unistd::setresuid(uid, uid, uid).map_err(ctx("setresuid to the instance uid"))?;
    unshare(CloneFlags::CLONE_NEWUSER).map_err(ctx("unshare user"))?;
    nix::unistd::write(&pipes.to_keeper, b"U").map_err(ctx("notify keeper"))?;
    let mut answer = [0u8; 1];
    match nix::unistd::read(pipes.from_keeper.as_raw_fd(), &mut answer) {
        Ok(1) if answer[0] == b'G' => {}
        _ => return Err("keeper could not write the id maps".into()),
    }
    let (uid, gid) = inside_ids(req);
    let (uid, gid) = (Uid::from_raw(uid), Gid::from_raw(gid));
    nix::unistd::setresgid(gid, gid, gid).map_err(ctx("setresgid"))?;
    nix::unistd::setresuid(uid, uid, uid).map_err(ctx("setresuid"))?;
    // Changing credentials cleared the parent-death signal.
    sys::set_parent_death_signal(libc::SIGKILL).map_err(ctx("set pdeathsig"))?;
    Ok(())
}

fn run_runtime(
    req: &KeeperRequest,
    err: OwnedFd,
    filters: &[BpfProgram],
    passed: Option<OwnedFd>,
) -> ! {
    const ERR_FD: RawFd = 3;
    // Out of the way of the two descriptors placed below (close_from drops the copy).
    let passed = match passed
        .map(|t| nix::fcntl::fcntl(t.as_raw_fd(), nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(16)))
    {
        None => None,
        Some(Ok(fd)) => Some(fd),
        Some(Err(e)) => fail(&err, &format!("dup the passed descriptor: {e}")),
    };
    let err = if err.as_raw_fd() == ERR_FD {
        err
    } else {
        if let Err(e) = nix::unistd::dup3(err.as_raw_fd(), ERR_FD, nix::fcntl::OFlag::O_CLOEXEC) {
            fail(&err, &format!("dup3 error pipe: {e}"));
        }
        drop(err);
        // SAFETY: dup3 just made fd 3 a copy of the error pipe; nothing else owns fd 3 in
        // this freshly forked process.
        unsafe { OwnedFd::from_raw_fd(ERR_FD) }
    };
    let mut first_unused = ERR_FD + 1;
    // The template's control socket, or the config pipe of a runtime started ahead.
    if let Some(fd) = passed {
        // dup2 leaves the copy open across the exec.
        if let Err(e) = nix::unistd::dup2(fd, crate::sandbox::PASSED_FD) {
            fail(&err, &format!("dup2 the passed descriptor: {e}"));
        }
        first_unused = crate::sandbox::PASSED_FD + 1;
    }
    if let Err(e) = runtime_setup(req, first_unused, filters) {
        fail(&err, &e);
    }
    let e = exec_runtime(req);
    fail(&err, &e)
}

fn runtime_setup(
    req: &KeeperRequest,
    first_unused_fd: RawFd,
    filters: &[BpfProgram],
) -> Result<()> {
    nix::unistd::setsid().map_err(ctx("setsid"))?;
    sys::dev_null_onto(0).map_err(ctx("/dev/null as stdin"))?;
    nix::unistd::dup2(1, 2).map_err(ctx("dup2 stderr"))?;
    sys::close_from(first_unused_fd);
    std::env::set_current_dir(&req.cwd).map_err(|e| format!("chdir {}: {e}", req.cwd.display()))?;

    if req.template {
        crate::privileges::apply_template()?;
    } else {
        crate::privileges::apply()?;
    }
    seccomp::install(filters).map_err(|e| e.to_string())?;
    Ok(())
}

fn exec_runtime(req: &KeeperRequest) -> String {
    let cstr = |b: &[u8]| CString::new(b).map_err(|_| "argument contains a NUL byte".to_string());
    let build = || -> Result<(CString, Vec<CString>, Vec<CString>)> {
        let program = cstr(req.program.as_os_str().as_bytes())?;
        let mut argv = vec![program.clone()];
        for a in &req.args {
            argv.push(cstr(a.as_bytes())?);
        }
        let mut envp = Vec::with_capacity(req.env.len());
        for (k, v) in &req.env {
            envp.push(cstr(format!("{k}={v}").as_bytes())?);
        }
        Ok((program, argv, envp))
    };
    match build() {
        Ok((program, argv, envp)) => match nix::unistd::execve(&program, &argv, &envp) {
            Ok(never) => match never {},
            Err(e) => format!("exec {}: {e}", req.program.display()),
        },
        Err(e) => e,
    }
}
